"""The three IAM policies, rendered from `fruits_config`: every prefix, the region, the account,
the subnet, the roles and the project tag come from the same validated settings the DAG runs with.
(The command that prints them is `python -m localdev.policies`.)

- `airflow-role`: what the Airflow workers do on platforms emr and databricks (upload the code
  bundle, check the weights, clear a date's run folder, read what the export copies) and EMR
  clusters tagged `project=<project_tag>` only;
- `emr-service-role`: AWS's managed `AmazonEMRServicePolicy_v2` (copy in iam/aws-managed/),
  every statement and action kept, resources narrowed to this region, account, subnet and roles;
- `ec2-instance-profile`: what the cluster's Spark jobs read and write (the EMR instance role;
  the Databricks workspace's instance profile takes the same policy).

iam/*.json are these policies (and the trust policies of the two EMR roles) rendered for
iam/example-fruits_config.json; tests/test_iam.py keeps them in sync and lints every rendered
policy with parliament (AWS's action and resource tables).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import boto3

from fruits.config import ConfigError, Deployment, RunConfig
from fruits.emr import PROJECT_TAG_KEY
from fruits.lake import split_s3_uri

IAM_DIR = Path(__file__).resolve().parents[2] / "iam"
MANAGED_EMR_SERVICE_POLICY = IAM_DIR / "aws-managed" / "AmazonEMRServicePolicy_v2.json"
# Actions the managed policy grants on "*" although each one acts on a resource ARN of these
# types (AWS's Service Authorization Reference; tests/test_iam.py checks this table against
# parliament's copy of it): granted on this account's resources of those types instead. The
# other actions on "*" (Describe*, DeletePlacementGroup...) take no resource ARN.
RESOURCE_TYPES_OF_STAR_ACTIONS = {
    "ec2:CreateLaunchTemplateVersion": ("ec2", ["launch-template/*"]),
    "ec2:DeleteLaunchTemplate": ("ec2", ["launch-template/*"]),
    "ec2:DeleteNetworkInterface": ("ec2", ["network-interface/*"]),
    "ec2:ModifyInstanceAttribute": ("ec2", ["instance/*", "security-group/*", "volume/*"]),
    "ec2:TerminateInstances": ("ec2", ["instance/*"]),
    "ec2:DescribeVpcAttribute": ("ec2", ["vpc/*"]),
    "ec2:AuthorizeSecurityGroupEgress": ("ec2", ["security-group/*", "security-group-rule/*"]),
    "ec2:AuthorizeSecurityGroupIngress": ("ec2", ["security-group/*", "security-group-rule/*"]),
    "ec2:RevokeSecurityGroupEgress": ("ec2", ["security-group/*"]),
    "ec2:RevokeSecurityGroupIngress": ("ec2", ["security-group/*"]),
    "application-autoscaling:DeleteScalingPolicy": (
        "application-autoscaling",
        ["scalable-target/*"],
    ),
    "application-autoscaling:DeregisterScalableTarget": (
        "application-autoscaling",
        ["scalable-target/*"],
    ),
    "application-autoscaling:PutScalingPolicy": ("application-autoscaling", ["scalable-target/*"]),
    "application-autoscaling:RegisterScalableTarget": (
        "application-autoscaling",
        ["scalable-target/*"],
    ),
    "resource-groups:ListGroupResources": ("resource-groups", ["group/*"]),
}


class Arns:
    """ARNs in the configured region and account (and the region's partition: aws, aws-cn...)."""

    def __init__(self, config: RunConfig):
        if not config.aws_account_id:
            raise ConfigError("fruits_config: aws_account_id is required to render IAM policies")
        self.region, self.account = config.region, config.aws_account_id
        self.partition = boto3.session.Session().get_partition_for_region(config.region)

    def of(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return ":".join(
            [
                "arn",
                self.partition,
                service,
                self.region if region else "",
                self.account if account else "",
                resource,
            ]
        )

    def role(self, name: str) -> str:
        return self.of("iam", f"role/{name}", region=False)

    def s3(self, bucket: str, key_pattern: str | None = None) -> str:
        path = bucket if key_pattern is None else f"{bucket}/{key_pattern}"
        return f"arn:{self.partition}:s3:::{path}"


def literal(text: str) -> str:
    """A key prefix as IAM reads it literally: `*`, `?` and `$` are special in policies."""
    return "".join({"*": "${*}", "?": "${?}", "$": "${$}"}.get(c, c) for c in text)


def statement(
    sid: str, actions: list[str], resources: list[str], condition: dict | None = None
) -> dict[str, Any]:
    rendered = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    return {**rendered, "Condition": condition} if condition else rendered


def document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


# --- the lake ---------------------------------------------------------------------------------


def objects_under(arns: Arns, config: RunConfig, *prefixes: str) -> list[str]:
    return [arns.s3(config.lake_bucket, f"{literal(prefix)}/*") for prefix in prefixes]


def weights_object(arns: Arns, config: RunConfig) -> str:
    bucket, key = split_s3_uri(config.weights_uri)
    return arns.s3(bucket, literal(key))


def list_the_lake(arns: Arns, config: RunConfig) -> dict[str, Any]:
    # Not narrowed by s3:prefix: without ListBucket, S3 answers a HEAD of a missing key with 403
    # instead of 404, and both the bundle check and Hadoop's filesystems probe missing keys.
    return statement("ListTheLake", ["s3:ListBucket"], [arns.s3(config.lake_bucket)])


def use_the_lakes_kms_key(config: RunConfig) -> list[dict[str, Any]]:
    """On a lake encrypted with SSE-KMS: S3 asks KMS, as the caller, to decrypt an object's data
    key on every GetObject (kms:Decrypt) and for a new one on every PutObject and multipart
    upload (kms:GenerateDataKey, and kms:Decrypt to complete a multipart upload): Amazon S3 User
    Guide, "Using server-side encryption with AWS KMS keys" and "Multipart upload API and
    permissions". Only through S3 in the lake's region (kms:ViaService). Nothing without a key."""
    if not config.lake_kms_key_arn:
        return []
    return [
        statement(
            "UseTheLakesKmsKeyThroughS3",
            ["kms:Decrypt", "kms:GenerateDataKey"],
            [config.lake_kms_key_arn],
            {"StringEquals": {"kms:ViaService": f"s3.{config.region}.amazonaws.com"}},
        )
    ]


# --- the three policies -----------------------------------------------------------------------


def airflow_role(config: RunConfig) -> dict[str, Any]:
    arns = Arns(config)
    exported = (
        config.runs_prefix,
        config.features_prefix,
        config.quarantine_prefix,
        config.vectors_prefix,
    )
    return document(
        [
            statement(
                "ReadTheBundleTheWeightsAndWhatIsExported",
                ["s3:GetObject"],
                [
                    *objects_under(arns, config, config.code_prefix, *exported),
                    weights_object(arns, config),
                ],
            ),
            statement(
                "UploadTheCodeBundle",
                ["s3:PutObject"],
                objects_under(arns, config, config.code_prefix),
            ),
            statement(  # clear_night_outputs: a date's run folder, vectors and PCA statistics
                "ClearANightBeforeARerun",
                ["s3:DeleteObject"],
                objects_under(
                    arns, config, config.runs_prefix, config.vectors_prefix, config.moments_prefix
                ),
            ),
            list_the_lake(arns, config),
            statement(
                "CreateOnlyProjectTaggedClusters",
                ["elasticmapreduce:RunJobFlow"],
                ["*"],  # RunJobFlow takes no resource ARN: the request's tags scope it
                {"StringEquals": {f"aws:RequestTag/{PROJECT_TAG_KEY}": config.project_tag}},
            ),
            statement(
                # A retried create finds its run's cluster by its tags. ListClusters takes no
                # resource ARN; it shows ids, names and states, DescribeCluster the rest.
                "FindThisRunsCluster",
                ["elasticmapreduce:ListClusters"],
                ["*"],
            ),
            statement(
                # No AddTags or RemoveTags: no cluster can be tagged into (or out of) scope.
                "UseOnlyProjectTaggedClusters",
                [
                    "elasticmapreduce:AddJobFlowSteps",
                    "elasticmapreduce:DescribeCluster",
                    "elasticmapreduce:DescribeStep",
                    "elasticmapreduce:TerminateJobFlows",
                ],
                [arns.of("elasticmapreduce", "cluster/*")],
                {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG_KEY}": config.project_tag}},
            ),
            pass_role(
                "PassTheServiceRoleToEmr", arns.role(config.emr.service_role), "elasticmapreduce"
            ),
            pass_role("PassTheInstanceRoleToEc2", arns.role(config.emr.instance_role), "ec2"),
            *use_the_lakes_kms_key(config),
        ]
    )


def pass_role(sid: str, role_arn: str, service: str) -> dict[str, Any]:
    # StringLike and the trailing * as in AWS's own EMR policies: the China regions' service
    # principals end in .amazonaws.com.cn.
    passed_to = {"StringLike": {"iam:PassedToService": f"{service}.amazonaws.com*"}}
    return statement(sid, ["iam:PassRole"], [role_arn], passed_to)


def ec2_instance_profile(config: RunConfig) -> dict[str, Any]:
    arns = Arns(config)
    written = (
        config.features_prefix,
        config.quarantine_prefix,
        config.vectors_prefix,
        config.moments_prefix,
        config.runs_prefix,
        config.model_cache_prefix,
        config.logs_prefix,
    )
    # Reads include every prefix written: Spark's committers and overwrites read back (and probe
    # with HEAD) what they write.
    read = (config.landing_prefix, config.code_prefix, *written)
    return document(
        [
            statement(
                "ReadInputsCodeWeightsAndOutputs",
                ["s3:GetObject"],
                [*objects_under(arns, config, *read), weights_object(arns, config)],
            ),
            statement(
                "WriteOutputsModelCacheAndLogs",
                ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                objects_under(arns, config, *written),
            ),
            list_the_lake(arns, config),
            *use_the_lakes_kms_key(config),
        ]
    )


def managed_emr_service_policy() -> dict[str, Any]:
    return json.loads(MANAGED_EMR_SERVICE_POLICY.read_text())


def emr_service_role(config: RunConfig) -> dict[str, Any]:
    """AWS's v2 policy, statement by statement, with its `*` regions, accounts, subnets and
    default role names replaced by this deployment's (its tag conditions are kept as they are)."""
    arns = Arns(config)
    replacements = {  # applied in this order
        "arn:aws:": f"arn:{arns.partition}:",
        ":iam::*:role/EMR_EC2_DefaultRole": f":iam::{arns.account}:role/{config.emr.instance_role}",
        ":iam::*:role/": f":iam::{arns.account}:role/",
        ":*:*:": f":{arns.region}:{arns.account}:",
        ":ec2:*::image/": f":ec2:{arns.region}::image/",
    }
    if config.emr.subnet_id:
        replacements["subnet/*"] = f"subnet/{config.emr.subnet_id}"
    managed = managed_emr_service_policy()["Document"]
    narrowed = []
    for original in managed["Statement"]:
        resources = as_list(original["Resource"])
        if resources == ["*"]:
            narrowed += scope_star(original, arns)
            continue
        for old, new in replacements.items():
            resources = [resource.replace(old, new) for resource in resources]
        narrowed.append({**original, "Resource": resources})
    return document(narrowed)


def scope_star(original: dict[str, Any], arns: Arns) -> list[dict[str, Any]]:
    """A statement on "*" split in two: the actions that take a resource ARN, on this account's
    resources of their types; the others on "*" as before. Same Sid stem, same conditions."""
    actions = as_list(original["Action"])
    scoped = [a for a in actions if a in RESOURCE_TYPES_OF_STAR_ACTIONS]
    unscoped = [a for a in actions if a not in RESOURCE_TYPES_OF_STAR_ACTIONS]
    split = []
    if scoped:
        resources = []
        for action in scoped:
            service, types = RESOURCE_TYPES_OF_STAR_ACTIONS[action]
            resources += [
                arns.of(service, kind) for kind in types if arns.of(service, kind) not in resources
            ]
        sid = original["Sid"] + ("InThisAccount" if unscoped else "")
        split.append({**original, "Sid": sid, "Action": scoped, "Resource": resources})
    if unscoped:
        split.append({**original, "Action": unscoped, "Resource": ["*"]})
    return split


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


POLICIES: dict[str, Callable[[RunConfig], dict[str, Any]]] = {
    "airflow-role": airflow_role,
    "emr-service-role": emr_service_role,
    "ec2-instance-profile": ec2_instance_profile,
}


# --- who may assume the roles EMR uses ----------------------------------------------------------
# (The Airflow role's trust depends on where Airflow runs: docs/deploy-aws.md.)


def emr_service_role_trust(config: RunConfig) -> dict[str, Any]:
    """EMR, for clusters of this account and region only (the confused-deputy conditions AWS
    documents for the EMR service role)."""
    arns = Arns(config)
    return document(
        [
            {
                "Sid": "EmrAssumesTheServiceRole",
                "Effect": "Allow",
                "Principal": {"Service": "elasticmapreduce.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": arns.account},
                    "ArnLike": {"aws:SourceArn": arns.of("elasticmapreduce", "*")},
                },
            }
        ]
    )


def ec2_instance_role_trust(config: RunConfig) -> dict[str, Any]:
    """EC2, for the instances of the instance profile that holds the role."""
    return document(
        [
            {
                "Sid": "Ec2AssumesTheInstanceRole",
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    )


TRUST_POLICIES: dict[str, Callable[[RunConfig], dict[str, Any]]] = {
    "emr-service-role-trust": emr_service_role_trust,
    "ec2-instance-role-trust": ec2_instance_role_trust,
}
DOCUMENTS = {**POLICIES, **TRUST_POLICIES}


def render(name: str, config: RunConfig) -> dict[str, Any]:
    return DOCUMENTS[name](config)


def config_from_variable(variable: dict[str, Any]) -> RunConfig:
    """The validated settings of a `fruits_config` Variable. A policy depends on no run: the
    date and platform only make the settings complete."""
    params = {"run_date": date.today().isoformat(), "platform": "emr"}
    return RunConfig.build(params, variable, Deployment())
