"""YARN admits the executors the EMR job flow asks for, on every core instance type it accepts.

moto accepts any job flow; a real ResourceManager refuses a container request larger than its
maximum allocation. The rule, from Hadoop's ResourceManager (apache/hadoop,
hadoop-yarn-server-resourcemanager, org.apache.hadoop.yarn.server.resourcemanager.scheduler):

- `SchedulerUtils.normalizeAndValidateRequest` -> `validateResourceRequest` ->
  `checkResourceRequestAgainstAvailableResource`: every countable resource of a request, vcores as
  well as memory-mb, must be <= the maximum allocation, whatever the resource calculator, or the
  request fails with InvalidResourceRequestException ("maximum allowed allocation is calculated by
  scheduler based on maximum resource of registered NodeManagers");
- `ClusterNodeTracker.getMaxAllowedAllocation`: that maximum is the configured
  `yarn.scheduler.maximum-allocation-*`, capped resource by resource by the largest registered
  NodeManager's `yarn.nodemanager.resource.*`.

Defaults where the job flow's yarn-site sets nothing: `yarn.scheduler.maximum-allocation-vcores` 4
(`YarnConfiguration.DEFAULT_RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES`); a NodeManager's vcores, the
node's vCPUs as EMR sets them (Hadoop's own `DEFAULT_NM_VCORES` is 8: no more generous for these
nodes); memory from AWS's EMR "Task configuration" page (`fruits.spark_sizing.EMR_CORE_NODES`, where
`yarn.scheduler.maximum-allocation-mb` = `yarn.nodemanager.resource.memory-mb` for every type).
What Spark 3.5 asks YARN for an executor (`YarnAllocator`, `ResourceProfile`): vcores =
`spark.executor.cores`; memory = `spark.executor.memory` + `spark.executor.memoryOverhead`
(+ `spark.executor.pyspark.memory` and off-heap memory, counted here when set).
EMR's capacity scheduler places containers by memory (`DefaultResourceCalculator`).
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from fruits import emr
from fruits.config import ConfigError, Deployment, RunConfig
from fruits.spark_sizing import EMR_CORE_NODES, TASK_SLOTS_PER_VCPU
from localdev import lake

pytestmark = pytest.mark.unit

VARIABLE = lake.fruits_config("s3://fruits-lake/models/mobilenet.weights.h5", "e" * 64)
HADOOP_MAX_ALLOCATION_VCORES = 4  # YarnConfiguration.DEFAULT_RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES
SPARK_AM = (512 + 384, 1)  # client mode: spark.yarn.am.memory 512m + 384m overhead, 1 core
EMR_MINIMUM_ALLOCATION_MB = 32  # yarn.scheduler.minimum-allocation-mb, EMR's task configuration


class Resource(NamedTuple):
    memory_mb: int
    vcores: int


def megabytes(size: str) -> int:
    return int(size[:-1]) * {"m": 1, "g": 1024}[size[-1].lower()]


def classification(job_flow: dict, name: str) -> dict[str, str]:
    found = [c for c in job_flow["Configurations"] if c["Classification"] == name]
    return found[0]["Properties"] if found else {}


def node_manager(job_flow: dict) -> Resource:
    """What each core node's NodeManager registers with the ResourceManager."""
    node = EMR_CORE_NODES[job_flow_core_type(job_flow)]
    yarn_site = classification(job_flow, "yarn-site")
    memory = int(yarn_site.get("yarn.nodemanager.resource.memory-mb", node.yarn_memory_mb))
    return Resource(memory, int(yarn_site.get("yarn.nodemanager.resource.cpu-vcores", node.vcpus)))


def max_allocation(job_flow: dict) -> Resource:
    """ClusterNodeTracker.getMaxAllowedAllocation: configured maximum capped by the largest node."""
    node = EMR_CORE_NODES[job_flow_core_type(job_flow)]
    yarn_site = classification(job_flow, "yarn-site")
    configured = Resource(
        int(yarn_site.get("yarn.scheduler.maximum-allocation-mb", node.yarn_memory_mb)),
        int(
            yarn_site.get("yarn.scheduler.maximum-allocation-vcores", HADOOP_MAX_ALLOCATION_VCORES)
        ),
    )
    largest = node_manager(job_flow)  # every core node is of the one core type
    return Resource(*(min(c, n) for c, n in zip(configured, largest, strict=True)))


def executor_request(job_flow: dict) -> Resource:
    """The container Spark's YarnAllocator asks for each executor."""
    spark = classification(job_flow, "spark-defaults")
    memory = sum(
        megabytes(spark[key])
        for key in (
            "spark.executor.memory",
            "spark.executor.memoryOverhead",
            "spark.executor.pyspark.memory",
            "spark.memory.offHeap.size",
        )
        if key in spark and (key != "spark.memory.offHeap.size" or _off_heap(spark))
    )
    return Resource(memory, int(spark["spark.executor.cores"]))


def _off_heap(spark: dict[str, str]) -> bool:
    return spark.get("spark.memory.offHeap.enabled", "false") == "true"


def refusals(request: Resource, maximum: Resource) -> list[str]:
    """SchedulerUtils.checkResourceRequestAgainstAvailableResource, resource by resource."""
    return [
        f"{name}: requested {asked} > maximum allowed allocation {allowed}"
        for name, asked, allowed in zip(Resource._fields, request, maximum, strict=True)
        if asked < 0 or asked > allowed
    ]


def normalized(request: Resource) -> Resource:
    """The scheduler rounds memory up to a multiple of the minimum allocation."""
    step = EMR_MINIMUM_ALLOCATION_MB
    return Resource(-(-request.memory_mb // step) * step, request.vcores)


def executors_on_a_node(job_flow: dict, with_application_master: bool) -> int:
    """How many executors EMR's capacity scheduler puts on one core node (memory decides)."""
    free = node_manager(job_flow).memory_mb - (SPARK_AM[0] if with_application_master else 0)
    return free // normalized(executor_request(job_flow)).memory_mb


def job_flow_core_type(job_flow: dict) -> str:
    (core,) = [g for g in job_flow["Instances"]["InstanceGroups"] if g["InstanceRole"] == "CORE"]
    return core["InstanceType"]


def job_flow_for(core_instance_type: str) -> dict:
    config = RunConfig.build(
        {"run_date": "2026-11-25", "platform": "emr"},
        {**VARIABLE, "emr_core_instance_type": core_instance_type},
        Deployment(),
    )
    return emr.job_flow(config, "s3://fruits-lake/code/abc", "run", "s3://fruits-lake/code/w")


@pytest.mark.parametrize("core_instance_type", sorted(EMR_CORE_NODES))
def test_yarn_admits_every_executor_on_every_accepted_core_type(core_instance_type):
    job_flow = job_flow_for(core_instance_type)
    assert refusals(executor_request(job_flow), max_allocation(job_flow)) == []
    assert refusals(Resource(*SPARK_AM), max_allocation(job_flow)) == []
    # Placed by memory, the executors fill the node's vcores exactly: 4 task slots per vCPU,
    # on the node that also runs Spark's ApplicationMaster as on the others.
    vcpus = EMR_CORE_NODES[core_instance_type].vcpus
    slots = executor_request(job_flow).vcores
    for with_am in (True, False):
        placed = executors_on_a_node(job_flow, with_application_master=with_am)
        assert placed * slots == node_manager(job_flow).vcores == vcpus * TASK_SLOTS_PER_VCPU


def test_the_model_refuses_what_yarn_refuses():
    job_flow = job_flow_for("m5.2xlarge")
    maximum = max_allocation(job_flow)
    assert refusals(Resource(maximum.memory_mb + 1, 1), maximum) == [
        "memory_mb: requested 24577 > maximum allowed allocation 24576"
    ]
    assert refusals(Resource(1024, maximum.vcores + 1), maximum) != []
    # Without the yarn-site classification, Hadoop's and EMR's defaults allow 4 vcores: the
    # executors' 16 task slots would be refused (what main rendered before this test).
    bare = {
        **job_flow,
        "Configurations": [
            c for c in job_flow["Configurations"] if c["Classification"] != "yarn-site"
        ],
    }
    assert max_allocation(bare) == Resource(24_576, HADOOP_MAX_ALLOCATION_VCORES)
    assert refusals(executor_request(bare), max_allocation(bare)) == [
        "vcores: requested 16 > maximum allowed allocation 4"
    ]


@pytest.mark.parametrize("core_instance_type", ["c5.xlarge", "m5.large", "m6i.2xlarge", "m5.metal"])
def test_a_core_type_without_known_yarn_resources_is_refused(core_instance_type):
    with pytest.raises(ConfigError, match=f"emr_core_instance_type='{core_instance_type}'"):
        job_flow_for(core_instance_type)
