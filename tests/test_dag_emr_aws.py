"""The DAG on platform emr as AWS would run it: as a user holding exactly the rendered Airflow
policy (moto checking every request against IAM), through a connection with no region, behind a
proxy that throttles chosen EMR calls and records the region each request was signed for.

moto checks the action and the resource of every request, not the conditions of a policy (it
evaluates only sts:ExternalId): the `aws:RequestTag/project` of RunJobFlow, the
`aws:ResourceTag/project` of the cluster actions and the `iam:PassedToService` of PassRole are
not checked here (tests/test_iam.py checks them statically), nor is iam:PassRole itself (moto's
RunJobFlow does not ask for it). moto checks EMR calls against resource "*"; the `cluster_arn`
shim below makes it check the cluster's ARN, as AWS does. Batch DeleteObjects is checked against
the bucket, not per key: the runs here start with an empty run folder, and a single delete shows
the per-key permission.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest
from botocore.exceptions import ClientError

from fake_cloud import clusters, expected_export, published, run_dag, seeded_cloud
from flaky_proxy import FlakyProxy
from fruits import iam
from localdev import lake
from localdev.emulators import REGION

pytestmark = pytest.mark.dag
ACCOUNT_ID = "123456789012"  # moto's
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def cluster_arn(response) -> str:
    """The resource AWS authorizes an EMR cluster call against (moto's EMR says "*"): the
    cluster's ARN, in the region the request was signed for. A TerminateJobFlows of several
    clusters is checked against the first."""
    ids = response._get_param("JobFlowIds") or [
        response._get_param(name) for name in ("ClusterId", "JobFlowId", "ResourceId")
    ]
    ids = [cluster_id for cluster_id in ids if cluster_id]
    if not ids:
        return "*"  # RunJobFlow, ListClusters: no resource ARN
    region = response.headers["Authorization"].split("Credential=")[1].split("/")[2]
    return f"arn:aws:elasticmapreduce:{region}:{response.current_account}:cluster/{ids[0]}"


def user(iam_client, name: str, policy: dict) -> tuple[str, str]:
    iam_client.create_user(UserName=name)
    iam_client.put_user_policy(
        UserName=name, PolicyName="fruits", PolicyDocument=json.dumps(policy)
    )
    key = iam_client.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def client(service: str, url: str, key: tuple[str, str]):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )


@pytest.fixture(scope="module")
def aws(tmp_path_factory, pretrained_weights):
    """moto + Azurite seeded; the users; the DAG's connection (no region) through the proxy."""
    from moto.core.authorization import enable_iam_authentication
    from moto.emr.responses import ElasticMapReduceResponse

    workdir = tmp_path_factory.mktemp("aws")
    with (
        seeded_cloud(workdir, pretrained_weights) as (endpoints, s3),
        FlakyProxy(endpoints.s3_url) as proxy,
        pytest.MonkeyPatch.context() as patch,
    ):
        variable = json.loads(os.environ["AIRFLOW_VAR_FRUITS_CONFIG"])
        variable["aws_account_id"] = ACCOUNT_ID
        policy = iam.render("airflow-role", iam.config_from_variable(variable))
        iam_client = client("iam", endpoints.s3_url, ("test", "test"))
        airflow_key = user(iam_client, "fruits-airflow", policy)
        admin_key = user(iam_client, "admin", ALLOW_ALL)
        other = client("s3", endpoints.s3_url, ("test", "test"))
        other.create_bucket(
            Bucket="someone-elses-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        connection = {
            "conn_type": "aws",
            "login": airflow_key[0],
            "password": airflow_key[1],
            # No region: the DAG must use fruits_config's. Fewer botocore attempts: quick tests.
            "extra": {
                "endpoint_url": proxy.url,
                "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 3}},
            },
        }
        patch.setenv("AIRFLOW_CONN_FRUITS_AWS", json.dumps(connection))
        patch.setenv("AIRFLOW_VAR_FRUITS_CONFIG", json.dumps(variable))
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_CONFIG_FILE", str(workdir / "no-aws-config"))
        patch.setattr(ElasticMapReduceResponse, "_determine_resource", cluster_arn, raising=False)
        with enable_iam_authentication():
            yield {
                "endpoints": endpoints,
                "proxy": proxy,
                "airflow": airflow_key,
                "admin": admin_key,
                "admin_s3": client("s3", endpoints.s3_url, admin_key),
            }


def run(pipeline_dag, aws):
    """One DAG run from empty folders of what clear_night_outputs clears (see the module's
    docstring: batch deletes)."""
    admin_s3 = aws["admin_s3"]
    for cleared in (
        "runs/2026-11-25/",
        "vectors/ingest_date=2026-11-25/",
        "moments/ingest_date=2026-11-25/",
    ):
        listed = admin_s3.list_objects_v2(Bucket=lake.LAKE_BUCKET, Prefix=cleared)
        for item in listed.get("Contents", []):
            admin_s3.delete_object(Bucket=lake.LAKE_BUCKET, Key=item["Key"])
    proxy = aws["proxy"]
    proxy.passed_targets.clear()
    proxy.signing_regions.clear()
    before = {c["Id"] for c in clusters(aws["endpoints"].s3_url, *aws["admin"])}
    dag_run, states, fake_emr = run_dag(pipeline_dag, aws["admin_s3"])
    new = [c for c in clusters(aws["endpoints"].s3_url, *aws["admin"]) if c["Id"] not in before]
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    return dag_run, states, tries, new, fake_emr


def test_a_whole_run_as_the_airflow_policy_in_the_configured_region(pipeline_dag, aws):
    dag_run, states, _, new, fake_emr = run(pipeline_dag, aws)

    assert dag_run.state == "success", states
    assert fake_emr.ran == ["featurize", "pca", "classify"]
    assert [c["Status"]["State"] for c in new] == ["TERMINATED"]
    _, copied = published(aws["endpoints"])
    assert copied == expected_export() | {"run/_EXPORT_MANIFEST.json"}
    # Every S3 and EMR request of the run was signed for fruits_config's region, although the
    # connection names none (boto3 alone would sign S3 for us-east-1 and find no EMR region).
    signed = aws["proxy"].signing_regions
    assert len(signed) > 30 and set(signed) == {REGION}


def test_what_the_policy_does_not_grant_is_denied(aws):
    url, key = aws["endpoints"].s3_url, aws["airflow"]
    s3, emr = client("s3", url, key), client("emr", url, key)
    denied = [
        lambda: s3.put_object(Bucket="someone-elses-bucket", Key="x", Body=b"x"),
        lambda: s3.put_object(
            Bucket=lake.LAKE_BUCKET, Key="landing/Training/Kiwi/2.jpg", Body=b"x"
        ),
        lambda: s3.delete_object(Bucket=lake.LAKE_BUCKET, Key=lake.WEIGHTS_KEY),
        lambda: s3.delete_bucket(Bucket=lake.LAKE_BUCKET),
        lambda: client("iam", url, key).create_user(UserName="intruder"),
        lambda: emr.add_tags(ResourceId="j-ANY", Tags=[{"Key": "project", "Value": "fruits"}]),
        lambda: emr.set_termination_protection(JobFlowIds=["j-ANY"], TerminationProtected=True),
    ]
    for call in denied:
        with pytest.raises(ClientError, match="AccessDenied"):
            call()
    # A single delete under runs/ (the batch delete's permission, per key).
    aws["admin_s3"].put_object(Bucket=lake.LAKE_BUCKET, Key="runs/2026-11-30/old.json", Body=b"{}")
    s3.delete_object(Bucket=lake.LAKE_BUCKET, Key="runs/2026-11-30/old.json")


def test_a_create_that_fails_after_run_job_flow_reuses_its_cluster(pipeline_dag, aws):
    """RunJobFlow succeeds, then the operator's DescribeCluster is throttled past botocore's 3
    attempts: the try fails. The retry finds the cluster by its run tag and keeps it."""
    aws["proxy"].throttle(
        "ElasticMapReduce.DescribeCluster", times=3, after="ElasticMapReduce.RunJobFlow"
    )
    dag_run, states, tries, new, _ = run(pipeline_dag, aws)

    assert dag_run.state == "success", states
    assert tries["emr.create_emr_cluster"] == 2
    assert [c["Status"]["State"] for c in new] == ["TERMINATED"]  # one cluster, ended


def test_a_throttled_describe_step_is_retried_without_adding_steps(pipeline_dag, aws):
    """DescribeStep throttled past botocore's attempts fails one try of the watcher; its retry
    watches the same step: the run succeeds and each step was added once."""
    aws["proxy"].throttle("ElasticMapReduce.DescribeStep", times=3)
    dag_run, states, tries, new, fake_emr = run(pipeline_dag, aws)

    assert dag_run.state == "success", states
    assert tries["emr.watch_featurize_step"] == 2
    assert fake_emr.ran == ["featurize", "pca", "classify"]
    (cluster,) = new
    emr = client("emr", aws["endpoints"].s3_url, aws["admin"])
    steps = emr.list_steps(ClusterId=cluster["Id"])["Steps"]
    assert sorted(step["Name"] for step in steps) == ["classify", "featurize", "pca"]


def test_a_run_job_flow_retried_by_botocore_keeps_one_cluster(pipeline_dag, aws):
    """RunJobFlow reaches EMR but its answer is lost (a 500): botocore retries it and a second
    cluster starts. The create keeps the one it got back and terminates the other at once,
    before any step is added."""
    aws["proxy"].lose_response("ElasticMapReduce.RunJobFlow")
    dag_run, states, tries, new, _ = run(pipeline_dag, aws)

    assert dag_run.state == "success", states
    assert tries["emr.create_emr_cluster"] == 1  # botocore's retry, within the try
    emr = client("emr", aws["endpoints"].s3_url, aws["admin"])
    steps = {c["Id"]: emr.list_steps(ClusterId=c["Id"])["Steps"] for c in new}
    (used,) = [cluster_id for cluster_id, listed in steps.items() if listed]
    (extra,) = [c for c in new if c["Id"] != used]
    first_step = min(step["Status"]["Timeline"]["CreationDateTime"] for step in steps[used])
    assert extra["Status"]["Timeline"]["EndDateTime"] <= first_step
    assert {c["Status"]["State"] for c in new} == {"TERMINATED"}
