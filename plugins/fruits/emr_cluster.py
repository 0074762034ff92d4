"""One EMR cluster per DAG run, found again by its tags: never an orphan.

RunJobFlow takes no idempotency token. A create that fails after the cluster exists (the
provider's DescribeCluster call after RunJobFlow, a dead worker, a RunJobFlow response lost and
retried by botocore) would start a second cluster on its retry, and a teardown terminating the
id in XCom would leave the first one running until its idle timeout. Every cluster carries the
tag `airflow_run_id=<DAG run id>` (fruits.emr.job_flow), so:

- `CreateRunClusterOperator` (the provider's EmrCreateJobFlowOperator) reuses an active cluster
  of this run when there is one, and calls RunJobFlow only when there is none;
- `TerminateRunClustersOperator` (the provider's EmrTerminateJobFlowOperator) terminates every
  active cluster of this run, whether or not the create task got to record its id.

`WatchStepSensor` (the provider's EmrStepSensor) watches the step an `EmrAddStepsOperator` added,
given that operator's `.output` (its list of step ids) as the provider's example DAG gives it.

The run's clusters are found with ListClusters (active states, this run's cluster name), then
DescribeCluster for their tags. ListClusters cannot be narrowed by tag in IAM; DescribeCluster
is (iam/airflow-role.json): a same-named cluster of another project answers AccessDenied, and is
not this run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.emr import (
    EmrCreateJobFlowOperator,
    EmrTerminateJobFlowOperator,
)
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from botocore.exceptions import ClientError

from fruits.emr import RUN_TAG_KEY

ACTIVE_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
ACCESS_DENIED = {"AccessDenied", "AccessDeniedException"}


def run_identity(job_flow: dict[str, Any]) -> tuple[str, str]:
    """The cluster name and the run tag value a RunJobFlow request gives its cluster."""
    tags = {tag["Key"]: tag["Value"] for tag in job_flow["Tags"]}
    return job_flow["Name"], tags[RUN_TAG_KEY]


def find_run_clusters(emr_client, name: str, run_tag: str) -> list[str]:
    """Ids of the active clusters named `name` and tagged with this run, oldest first."""
    found = []
    for page in emr_client.get_paginator("list_clusters").paginate(ClusterStates=ACTIVE_STATES):
        for summary in page["Clusters"]:
            if summary["Name"] != name:
                continue
            try:
                cluster = emr_client.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            except ClientError as error:
                if error.response["Error"]["Code"] in ACCESS_DENIED:
                    continue  # not tagged with our project: not this run's
                raise
            tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
            if tags.get(RUN_TAG_KEY) == run_tag:
                found.append((summary["Status"]["Timeline"]["CreationDateTime"], summary["Id"]))
    return [cluster_id for _, cluster_id in sorted(found)]


class CreateRunClusterOperator(EmrCreateJobFlowOperator):
    """Creates this DAG run's cluster, or reuses it if an earlier try already created it."""

    def execute(self, context) -> str | None:
        name, run_tag = run_identity(self.job_flow_overrides)
        existing = find_run_clusters(self.hook.conn, name, run_tag)
        if existing:
            self.log.info("Reusing cluster %s, created for this run by an earlier try", existing[0])
            cluster_id = self._job_flow_id = existing[0]  # what the provider's on_kill terminates
        else:
            cluster_id = super().execute(context)
            # botocore retries a RunJobFlow whose answer was lost (a 5xx, a timeout): the same
            # call may have started more than one cluster.
            existing = find_run_clusters(self.hook.conn, name, run_tag)
        extra = [other for other in existing if other != cluster_id]
        if extra:
            self.log.warning("Terminating extra clusters of this run: %s", extra)
            self.hook.conn.terminate_job_flows(JobFlowIds=extra)
        return cluster_id


class TerminateRunClustersOperator(EmrTerminateJobFlowOperator):
    """Terminates every active cluster of this DAG run (a teardown: runs whatever happened)."""

    template_fields: Sequence[str] = (*EmrTerminateJobFlowOperator.template_fields, "job_flow")

    def __init__(self, *, job_flow: dict[str, Any] | Any, **kwargs):
        super().__init__(job_flow_id="found by its tags", **kwargs)
        self.job_flow = job_flow

    def execute(self, context) -> list[str]:
        clusters = find_run_clusters(self.hook.conn, *run_identity(self.job_flow))
        if clusters:
            self.log.info("Terminating this run's clusters: %s", clusters)
            self.hook.conn.terminate_job_flows(JobFlowIds=clusters)
        else:
            self.log.info("No active cluster of this run")
        return clusters


class WatchStepSensor(EmrStepSensor):
    """Watches the one step an EmrAddStepsOperator added: `step_id` is that operator's `.output`,
    the list of the ids of the steps it added (example_emr.py unwraps it with a task of its own;
    here it is unwrapped in place, so the night's chain of tasks stays as long as it was)."""

    def execute(self, context) -> None:
        self.step_id = only_step(self.step_id)
        return super().execute(context)


def only_step(step_ids: list[str] | str) -> str:
    """The id of the one step added (a plain id is taken as it is)."""
    if isinstance(step_ids, str):
        return step_ids
    if len(step_ids) != 1:
        raise ValueError(f"expected the id of one added step, got {step_ids!r}")
    return step_ids[0]
