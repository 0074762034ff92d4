"""EMR as data: the job flow (cluster) and the steps, built from the run's config.

Kept as plain dictionaries in the shape of the EMR RunJobFlow / AddJobFlowSteps APIs (tests
validate them against botocore's service model), so a reviewer reads the cluster here.
"""

from __future__ import annotations

from typing import Any

from fruits.code_bundle import REQUIREMENTS_LOCK
from fruits.config import EMR_CORE_NODES, RunConfig, task_slots
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

# The executors, as YARN admits and places them. The ResourceManager refuses a container that asks
# for more vcores or memory than its maximum allocation: yarn.scheduler.maximum-allocation-*
# (Hadoop's default: 4 vcores), capped by the largest registered NodeManager's
# yarn.nodemanager.resource.* (EMR: the node's vCPUs), whatever the resource calculator (Hadoop's
# SchedulerUtils.checkResourceRequestAgainstAvailableResource, ClusterNodeTracker). Spark asks
# YARN for one vcore per task slot (spark.executor.cores; spark.task.cpus cannot go below 1), so
# TASK_SLOTS_PER_VCPU slots per vCPU means asking for more vcores than the node has vCPUs. The
# yarn-site classification therefore counts a core node's vcores as its task slots (vCPUs x
# TASK_SLOTS_PER_VCPU), for the NodeManager and the scheduler's maximum alike: a vcore here is a
# task slot, which YARN does not pin to a CPU (this cluster configures no CGroups CPU limits).
# Each executor: the task slots of EXECUTOR_VCPUS vCPUs, EXECUTOR_HEAP_MB of JVM heap, and the rest
# of its share of the node's YARN memory outside the heap, for its Python workers (one per running
# task, each with its own TFLite interpreter: ~200 MB with ordinary photos, under 900 MB with
# 200 Mpx ones) and the JVM's own off-heap memory. Sized so that EMR's capacity scheduler, which
# places containers by memory alone (DefaultResourceCalculator), puts exactly vCPUs /
# EXECUTOR_VCPUS executors on a node, as many as its vcores hold, after Spark's ApplicationMaster.
EXECUTOR_VCPUS = 4
EXECUTOR_HEAP_MB = 3 * 1024
# Spark's ApplicationMaster in client mode: spark.yarn.am.memory (512m) + its overhead (384m).
SPARK_AM_CONTAINER_MB = 512 + 384
# YARN rounds a container's memory up to yarn.scheduler.minimum-allocation-mb steps (EMR: 32).
YARN_MEMORY_STEP_MB = 32


def node_vcores(instance_type: str) -> int:
    """A core node's YARN vcores: one per task slot."""
    return task_slots(EMR_CORE_NODES[instance_type].vcpus)


def yarn_site(instance_type: str) -> dict[str, str]:
    vcores = str(node_vcores(instance_type))
    return {
        "yarn.nodemanager.resource.cpu-vcores": vcores,
        "yarn.scheduler.maximum-allocation-vcores": vcores,
    }


def spark_executors(instance_type: str) -> dict[str, str]:
    """spark-defaults for the executors of a core node type: each one container YARN admits."""
    node = EMR_CORE_NODES[instance_type]
    per_node = node.vcpus // EXECUTOR_VCPUS
    share_mb = (node.yarn_memory_mb - SPARK_AM_CONTAINER_MB) // per_node
    container_mb = share_mb // YARN_MEMORY_STEP_MB * YARN_MEMORY_STEP_MB
    return {
        "spark.executor.cores": str(task_slots(EXECUTOR_VCPUS)),
        "spark.executor.memory": f"{EXECUTOR_HEAP_MB}m",
        "spark.executor.memoryOverhead": f"{container_mb - EXECUTOR_HEAP_MB}m",
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
