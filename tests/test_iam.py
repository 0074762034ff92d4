"""The IAM policies shipped in iam/ are least-privilege and cover what the DAG does."""

import json

import pytest

from fruits.iam import POLICIES, render

VALUES = {"LAKE_BUCKET": "fruits-lake", "REGION": "eu-west-1", "ACCOUNT_ID": "123456789012"}
VALUES["SUBNET_ID"] = "subnet-0abc"


def statements(name):
    return render(name, VALUES)["Statement"]


# Actions that take no resource ARN (the Service Authorization Reference lists no resource type):
# "*" is their only possible resource, so a request-tag condition must scope them instead.
NO_RESOURCE_LEVEL = {"elasticmapreduce:RunJobFlow"}


@pytest.mark.parametrize("name", ["airflow-role", "emr-service-role", "ec2-instance-profile"])
def test_no_wildcard_actions_and_scoped_resources(name):
    for statement in statements(name):
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"]), statement
        assert statement["Resource"], statement
        if "*" in statement["Resource"]:
            assert set(statement["Action"]) <= NO_RESOURCE_LEVEL, statement
            assert any(
                key.startswith("aws:RequestTag/")
                for condition in statement["Condition"].values()
                for key in condition
            ), statement
        for resource in statement["Resource"]:
            if resource.startswith("arn:aws:s3:::"):
                assert resource.split(":::")[1].split("/")[0] == "fruits-lake", resource


def test_the_airflow_role_grants_what_the_dag_calls():
    granted = {action for s in statements("airflow-role") for action in s["Action"]}
    used = {
        "elasticmapreduce:RunJobFlow",  # EmrCreateJobFlowOperator
        "elasticmapreduce:AddJobFlowSteps",  # EmrAddStepsOperator
        "elasticmapreduce:DescribeStep",  # EmrStepSensor
        "elasticmapreduce:TerminateJobFlows",  # EmrTerminateJobFlowOperator
        "s3:GetObject",  # weights check, S3ToAzureBlobStorageOperator
        "s3:PutObject",  # code bundle
        "s3:ListBucket",  # listings
        "iam:PassRole",  # the cluster's roles
    }
    assert used <= granted


def test_rendering_refuses_missing_values():
    with pytest.raises(SystemExit, match="ACCOUNT_ID"):
        render("airflow-role", {"LAKE_BUCKET": "fruits-lake", "REGION": "eu-west-1"})


def test_the_policy_files_are_json():
    for path in POLICIES.glob("*.json"):
        assert json.loads(path.read_text())["Version"] == "2012-10-17"


def test_the_clusters_the_dag_creates_carry_the_tag_run_job_flow_requires():
    from fruits import emr
    from fruits.config import Deployment, RunConfig
    from localdev import lake

    (statement,) = [
        s for s in statements("airflow-role") if "elasticmapreduce:RunJobFlow" in s["Action"]
    ]
    config = RunConfig.build(
        {"run_date": "2026-11-25"},
        lake.fruits_config("s3://fruits-lake/models/w.weights.h5", "e" * 64),
        Deployment(),
    )
    request = emr.job_flow(config, "s3://fruits-lake/code/abc", "scheduled__2026-11-25")
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    for key, value in statement["Condition"]["StringEquals"].items():
        assert tags[key.removeprefix("aws:RequestTag/")] == value
