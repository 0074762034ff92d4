"""The IAM policies shipped in iam/ are least-privilege and cover what the DAG does."""

import json

import pytest

from fruits.iam import POLICIES, render

VALUES = {"LAKE_BUCKET": "fruits-lake", "REGION": "eu-west-1", "ACCOUNT_ID": "123456789012"}
VALUES["SUBNET_ID"] = "subnet-0abc"


def statements(name):
    return render(name, VALUES)["Statement"]


@pytest.mark.parametrize("name", ["airflow-role", "emr-service-role", "ec2-instance-profile"])
def test_no_wildcard_actions_and_scoped_resources(name):
    for statement in statements(name):
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"]), statement
        assert statement["Resource"] and "*" not in statement["Resource"], statement
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
