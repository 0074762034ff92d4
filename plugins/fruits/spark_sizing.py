"""How big the Spark executors are, on every platform: task slots per vCPU, EC2 sizes, and the
EMR core nodes' YARN resources the executors are cut from.

Read by the config (which core types it accepts), the EMR job flow (yarn-site, spark-defaults),
the Databricks job cluster and the local platform (their task slots).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Spark task slots per vCPU, on every platform (EMR executors, the Databricks job cluster, local
# mode, make featurize). Each photo is one object-store GET, made by its task in the JVM, one
# object after the other: with one slot per vCPU a core idles for every GET's latency. With
# several, other tasks' workers compute meanwhile. Measured by benchmarks/latency
# (docs/performance.md, "At object-store latency"), with what bounds it: each slot is a Python
# worker holding its own TFLite interpreter.
TASK_SLOTS_PER_VCPU = 4
# An EC2 instance type's size: large (2 vCPUs), xlarge (4) or <n>xlarge (4n), as in every current
# general-purpose, compute- and memory-optimised family; Databricks names AWS nodes the same way.
INSTANCE_SIZE = re.compile(r"^[a-z][a-z0-9-]*\.(?:(\d*)x)?large$")


class EmrNode(NamedTuple):
    """What an EMR core node offers YARN: its vCPUs, and the memory EMR gives the NodeManager."""

    vcpus: int
    yarn_memory_mb: (
        int  # yarn.nodemanager.resource.memory-mb = yarn.scheduler.maximum-allocation-mb
    )


# The core instance types emr_core_instance_type accepts: AWS's figures, from EMR's "Task
# configuration" defaults (Amazon EMR Release Guide, emr-hadoop-task-config), where
# yarn.nodemanager.resource.memory-mb and yarn.scheduler.maximum-allocation-mb are equal for each
# of these types. The executors are sized from them (below), so a type whose figures are not
# here is refused rather than guessed at. General-purpose types only: 4 GiB per vCPU holds the
# task slots' Python workers (EXECUTOR_VCPUS); compute-optimised ones (2 GiB) do not.
EMR_TASK_CONFIG_URL = (
    "https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-hadoop-task-config.html"
)
EMR_CORE_NODES = {
    f"{family}.{size}": EmrNode(vcpus, memory_mb)
    for family in ("m5", "m5a", "m5d")
    for size, vcpus, memory_mb in (
        ("xlarge", 4, 12_288),
        ("2xlarge", 8, 24_576),
        ("4xlarge", 16, 57_344),
        ("8xlarge", 32, 122_880),
        ("12xlarge", 48, 188_416),
        ("16xlarge", 64, 253_952),
        ("24xlarge", 96, 385_024),
    )
}


def task_slots(vcpus: int) -> int:
    """How many Spark tasks run at once on `vcpus` vCPUs."""
    return vcpus * TASK_SLOTS_PER_VCPU


def instance_vcpus(instance_type: str) -> int | None:
    """The vCPUs of an EC2 instance type, from its size (m5d.2xlarge: 8); None for sizes that
    do not say (metal, medium, ...)."""
    size = INSTANCE_SIZE.match(instance_type)
    if size is None:
        return None
    if size.group(1) is None:
        return 2
    return 4 * int(size.group(1) or 1)


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
