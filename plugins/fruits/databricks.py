"""Databricks as data: the run's Spark jobs as one Databricks job (Jobs API `JobSettings`).

The same `SparkJob`s the EMR steps run: each becomes a `spark_python_task` running the job script
from the content-addressed code bundle with the same arguments, chained featurize -> pca ->
classify with `depends_on`, all on one job cluster declared once. (`runs/submit` cannot share a
job cluster between tasks, so the DAG creates or resets a named job and runs it.) A job cluster
exists only for its run: Databricks releases it when the run ends, `timeout_seconds` bounds the
run if Airflow goes away, and the DAG's teardown cancels a run Airflow stopped watching.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fruits.code_bundle import LIBRARY_WHEEL
from fruits.config import RunConfig
from fruits.databricks_runtime import JOB_LIBRARIES
from fruits.spark_sizing import instance_vcpus, task_slots
from fruits.spark_steps import SparkJob
from fruits.wheelhouse import parse_lock

JOB_CLUSTER_KEY = "fruits"


def library_pins(requirements_lock: str) -> list[str]:
    """What the job cluster adds to its runtime (fruits.databricks_runtime), pinned as in
    `spark_jobs/requirements.lock`: never a library the runtime has, which pip would replace."""
    locked = parse_lock(requirements_lock)
    return [f"{name}=={locked[name][0]}" for name in JOB_LIBRARIES]


def job_settings(
    config: RunConfig, jobs: list[SparkJob], code_uri: str, requirements_lock: str, timeout_s: int
) -> dict[str, Any]:
    code = code_uri.rstrip("/")
    # Libraries belong to tasks, not to a shared job cluster (a Jobs API rule).
    libraries = [{"pypi": {"package": pin}} for pin in library_pins(requirements_lock)]
    libraries.append({"whl": f"{code}/{LIBRARY_WHEEL}"})
    tasks = []
    for previous, job in zip([None, *jobs], jobs, strict=False):
        task: dict[str, Any] = {
            "task_key": job.name,
            "job_cluster_key": JOB_CLUSTER_KEY,
            "spark_python_task": {
                "python_file": f"{code}/{job.script}",
                "parameters": job.arguments(),
            },
            "libraries": libraries,
        }
        if previous:
            task["depends_on"] = [{"task_key": previous.name}]
        tasks.append(task)
    return {
        "name": config.databricks.job_name,
        "tags": {"project": config.project_tag},
        "max_concurrent_runs": 1,  # a run rewrites runs/<date>/: never two at once
        "timeout_seconds": timeout_s,
        # Declared, so the provider does not turn the Airflow run form into job parameters.
        "parameters": [{"name": "run_date", "default": config.run_date}],
        "job_clusters": [{"job_cluster_key": JOB_CLUSTER_KEY, "new_cluster": job_cluster(config)}],
        "tasks": tasks,
    }


def job_cluster(config: RunConfig) -> dict[str, Any]:
    settings = config.databricks
    cluster: dict[str, Any] = {
        "spark_version": settings.spark_version,
        "node_type_id": settings.node_type_id,
        "num_workers": settings.num_workers,
        "spark_conf": {"spark.sql.execution.arrow.pyspark.enabled": "true"},
        # A standalone worker offers Spark as many task slots as SPARK_WORKER_CORES (default: its
        # vCPUs): TASK_SLOTS_PER_VCPU per vCPU, so photos' reads overlap the others' compute.
        "spark_env_vars": {
            "SPARK_WORKER_CORES": str(task_slots(instance_vcpus(settings.node_type_id)))
        },
        "cluster_log_conf": {
            "s3": {
                "destination": f"s3://{config.lake_bucket}/{config.logs_prefix}/databricks",
                "region": config.region,
            }
        },
        "custom_tags": {"project": config.project_tag, "run_date": config.run_date},
    }
    if settings.instance_profile_arn:
        cluster["aws_attributes"] = {"instance_profile_arn": settings.instance_profile_arn}
    return cluster


def idempotency_token(airflow_run_id: str) -> str:
    """Same Airflow run -> same Databricks run while it is active: a retried run-now request
    reconnects instead of starting a second cluster (the API takes at most 64 characters)."""
    return hashlib.sha256(airflow_run_id.encode()).hexdigest()
