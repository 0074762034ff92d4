"""EMR as data: the job flow (cluster) and the steps, built from the run's config.

Kept as plain dictionaries in the shape of the EMR RunJobFlow / AddJobFlowSteps APIs (tests
validate them against botocore's service model), so a reviewer reads the cluster here.
"""

from __future__ import annotations

from typing import Any

from fruits.code_bundle import REQUIREMENTS_LOCK
from fruits.config import RunConfig
from fruits.spark_sizing import spark_executors, yarn_site
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


def job_flow(config: RunConfig, code_uri: str, run_id: str, wheelhouse_uri: str) -> dict[str, Any]:
    """The cluster; its bootstrap installs the bundle's requirements.lock from `wheelhouse_uri`
    (fruits.code_bundle.wheelhouse_uri), never from PyPI."""
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
                "Name": "install spark_jobs/requirements.lock",
                "ScriptBootstrapAction": {
                    "Path": f"{code_uri}/bootstrap/install_requirements.sh",
                    "Args": [f"{code_uri}/{REQUIREMENTS_LOCK}", wheelhouse_uri],
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
                    **spark_executors(emr.core_instance_type),
                },
            },
            {"Classification": "yarn-site", "Properties": yarn_site(emr.core_instance_type)},
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
