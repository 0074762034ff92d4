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
from fruits.config import RunConfig, instance_vcpus, task_slots
from fruits.spark_steps import SparkJob

JOB_CLUSTER_KEY = "fruits"


def requirement_pins(requirements_txt: str) -> list[str]:
    """`spark_jobs/requirements.txt` as a list of pins (comments and blank lines dropped)."""
    pins = [line.split("#", 1)[0].strip() for line in requirements_txt.splitlines()]
    return [pin for pin in pins if pin]


def job_settings(
    config: RunConfig, jobs: list[SparkJob], code_uri: str, requirements_txt: str, timeout_s: int
) -> dict[str, Any]:
    code = code_uri.rstrip("/")
    # Libraries belong to tasks, not to a shared job cluster (a Jobs API rule).
    libraries = [{"pypi": {"package": pin}} for pin in requirement_pins(requirements_txt)]
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
