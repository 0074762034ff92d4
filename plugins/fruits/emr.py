"""EMR as data: the job flow (cluster) and the steps, built from the run's config.

Kept as plain dictionaries in the shape of the EMR RunJobFlow / AddJobFlowSteps APIs (tests
validate them against botocore's service model), so a reviewer reads the cluster here.
"""

from __future__ import annotations

from typing import Any

from fruits.config import RunConfig, task_slots
from fruits.spark_steps import SparkJob

PROJECT_TAG_KEY = "project"  # the IAM policies scope the Airflow role's EMR calls by this tag
RUN_TAG_KEY = "airflow_run_id"  # finds a DAG run's clusters (fruits.emr_cluster)
# AmazonEMRServicePolicy_v2, on which the EMR service role is built, lets EMR launch only what
# carries this tag; EMR propagates a cluster's tags to the instances and volumes it launches.
EMR_MANAGED_POLICIES_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
STEP_KILL_AFTER_S = 60  # a driver still alive this long after SIGTERM is killed
VENV_PYTHON = "/opt/fruits-venv/bin/python"  # made by spark_jobs/bootstrap/install_requirements.sh
# Merged into the cluster's log4j2.properties. At INFO, Spark's FileScanRDD logs one line per file
# it reads: a line per photo, ~200 MB of executor logs per million. Only that logger is quieted.
SPARK_LOG4J2 = {
    "logger.filescanrdd.name": "org.apache.spark.sql.execution.datasources.FileScanRDD",
    "logger.filescanrdd.level": "warn",
}

# The executors, as YARN places them. EMR's capacity scheduler counts memory only
# (DefaultResourceCalculator), so an executor's task slots (spark.executor.cores, one task each:
# spark.task.cpus stays 1) are not bounded by vCPUs, and YARN puts as many executors on a node as
# its memory holds. Each executor: the task slots of 4 vCPUs (TASK_SLOTS_PER_VCPU each), 3 GiB of
# JVM heap, and 8 GiB outside it for its Python workers (one per running task, each with its own
# TFLite interpreter: ~200 MB with ordinary photos, under 900 MB with 200 Mpx ones) and the JVM's
# own off-heap memory. 11 GiB a container: an m5.2xlarge core node (8 vCPUs, 24 GiB for YARN)
# runs 2 executors, 32 slots, 4 per vCPU; an m5.xlarge (12 GiB) one, 16 slots on 4 vCPUs.
EXECUTOR_VCPUS = 4
SPARK_EXECUTORS = {
    "spark.executor.cores": str(task_slots(EXECUTOR_VCPUS)),
    "spark.executor.memory": "3g",
    "spark.executor.memoryOverhead": "8g",
}


def job_flow(config: RunConfig, code_uri: str, run_id: str) -> dict[str, Any]:
    emr = config.emr
    instances: dict[str, Any] = {
        "InstanceGroups": [
            {
                "Name": "primary",
                "Market": "ON_DEMAND",
                "InstanceRole": "MASTER",
                "InstanceType": emr.primary_instance_type,
                "InstanceCount": 1,
            },
            {
                "Name": "core",
                "Market": "ON_DEMAND",
                "InstanceRole": "CORE",
                "InstanceType": emr.core_instance_type,
                "InstanceCount": emr.core_instance_count,
            },
        ],
        # Steps are added one by one: the cluster must wait for them, not end when idle.
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if emr.subnet_id:
        instances["Ec2SubnetId"] = emr.subnet_id
    python_env = {"PYSPARK_PYTHON": VENV_PYTHON, "PYSPARK_DRIVER_PYTHON": VENV_PYTHON}
    return {
        "Name": f"fruits-{config.run_date}",
        "ReleaseLabel": emr.release_label,
        "Applications": [{"Name": "Spark"}],
        "LogUri": f"s3://{config.lake_bucket}/{config.logs_prefix}/",
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": "install spark_jobs/requirements.txt",
                "ScriptBootstrapAction": {
                    "Path": f"{code_uri}/bootstrap/install_requirements.sh",
                    "Args": [f"{code_uri}/requirements.txt"],
                },
            }
        ],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Configurations": [{"Classification": "export", "Properties": python_env}],
            },
            {
                "Classification": "spark-defaults",
                "Properties": {
                    "spark.pyspark.python": VENV_PYTHON,
                    "spark.sql.execution.arrow.pyspark.enabled": "true",
                    **SPARK_EXECUTORS,
                },
            },
            {"Classification": "spark-log4j2", "Properties": SPARK_LOG4J2},
        ],
        # The DAG terminates the cluster; this is the safety net if Airflow itself goes away.
        "AutoTerminationPolicy": {"IdleTimeout": emr.idle_timeout_s},
        "JobFlowRole": emr.instance_profile,
        "ServiceRole": emr.service_role,
        "VisibleToAllUsers": True,
        "Tags": [
            {"Key": PROJECT_TAG_KEY, "Value": config.project_tag},
            {"Key": "run_date", "Value": config.run_date},
            {"Key": RUN_TAG_KEY, "Value": run_tag(run_id)},
            EMR_MANAGED_POLICIES_TAG,
        ],
    }


def run_tag(run_id: str) -> str:
    """A DAG run id as an EMR tag value (at most 256 characters)."""
    return run_id[:256]


def step(job: SparkJob, code_uri: str, timeout_s: int) -> dict[str, Any]:
    """One spark-submit through command-runner.jar, ended on the cluster after `timeout_s`.

    EMR has no step timeout, and its idle auto-termination never fires while a step runs: a
    hung job would keep the cluster (and the night's bill) running after Airflow gave up on it,
    or after a run timeout skipped the teardown. So the step is its own bound: coreutils
    `timeout` (in every EMR 7 image) sends the client-mode driver SIGTERM, which stops the
    SparkContext and its YARN application, then SIGKILL if it still runs; the step ends FAILED
    (exit code 124) and the cluster goes idle."""
    return {
        "Name": job.name,
        "ActionOnFailure": "CONTINUE",  # the DAG decides; it also terminates the cluster
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                *STEP_TIMEOUT_COMMAND,
                f"{timeout_s}s",
                *job.spark_submit(code_uri, "--deploy-mode", "client"),
            ],
        },
    }


# `timeout [--kill-after=D] DURATION COMMAND...` (GNU coreutils): SIGTERM at DURATION, SIGKILL
# D later; exit status 124 when the time ran out.
STEP_TIMEOUT_COMMAND = ("timeout", f"--kill-after={STEP_KILL_AFTER_S}s")
