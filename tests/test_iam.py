"""The IAM policies: rendered from fruits_config, linted with parliament (AWS's own action and
resource tables), the EMR service role still AWS's managed one, and each role granting what its
callers touch (the jobs' URIs, the DAG's calls) and nothing that widens its scope."""

from __future__ import annotations

import fnmatch
import json
import re

import parliament
import pytest

from fruits import emr, iam
from fruits.config import ConfigError
from fruits.spark_steps import pipeline_jobs
from localdev import policies

pytestmark = pytest.mark.unit

EXAMPLE = json.loads((iam.IAM_DIR / "example-fruits_config.json").read_text())
# Every prefix moved, another region and tag: what the policies must follow.
MOVED = {
    **EXAMPLE,
    "region": "us-east-2",
    "landing_prefix": "in/photos",
    "runs_prefix": "out/runs",
    "code_prefix": "deploy/code",
    "logs_prefix": "ops/logs",
    "model_cache_prefix": "cache/tflite",
    "features_prefix": "out/features",
    "quarantine_prefix": "out/bad",
    "vectors_prefix": "out/vectors",
    "moments_prefix": "out/moments",
    "weights_uri": "s3://fruits-models/pinned/mobilenet.weights.h5",
    "project_tag": "fruits-staging",
    "emr_subnet_id": "",
}
# A lake bucket encrypted with SSE-KMS under its own key.
KMS_KEY = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SSE_KMS = {**MOVED, "lake_kms_key_arn": KMS_KEY}
SETTINGS = {"example": EXAMPLE, "moved": MOVED, "sse-kms": SSE_KMS}
DEFINITIONS = {service["prefix"]: service for service in parliament.iam_definition}


def config(name="example"):
    return iam.config_from_variable(SETTINGS[name])


def actions(statement) -> list[str]:
    return iam.as_list(statement["Action"])


def resource_types(action: str) -> list[dict]:
    """AWS's resource types of an action (Service Authorization Reference, parliament's copy)."""
    service, name = action.split(":")
    (privilege,) = [p for p in DEFINITIONS[service]["privileges"] if p["privilege"] == name]
    return [r for r in privilege["resource_types"] if r["resource_type"]]


def arn_format(action: str, resource_type: str) -> str:
    service = action.split(":")[0]
    (resource,) = [
        r for r in DEFINITIONS[service]["resources"] if r["resource"] == resource_type.rstrip("*")
    ]
    return re.sub(r"\$\{.*?\}", "*", resource["arn"])  # as parliament matches them


def granted(policy, action: str, arn: str) -> bool:
    """Whether an Allow statement names `action` on a resource pattern matching `arn`."""
    return any(
        action in actions(s)
        and any(fnmatch.fnmatchcase(arn, r) for r in iam.as_list(s["Resource"]))
        for s in policy["Statement"]
    )


# --- parliament -------------------------------------------------------------------------------


def covered_elsewhere(policy, finding) -> bool:
    """RESOURCE_MISMATCH says one statement grants an action without every resource type the
    action needs. IAM authorizes each resource of a request on its own, so AWS's managed policy
    splits an action's resource types across statements with different tag conditions: allowed
    only when another statement of the same policy grants that action on that resource type."""
    return all(
        any(
            item["action"] in actions(s)
            and any(
                resource == "*"  # an action that takes no resource ARN needs exactly "*"
                if item["required_format"] == "*"
                else parliament.is_arn_match("", item["required_format"], resource)
                for resource in iam.as_list(s["Resource"])
            )
            for s in policy["Statement"]
        )
        for item in finding.detail
    )


def pass_role_only(policy) -> bool:
    """PERMISSIONS_MANAGEMENT_ACTIONS (a community auditor) flags iam:PassRole: allowed when it is
    the only IAM action, on named roles, and only to the service named by iam:PassedToService."""
    iam_statements = [
        s for s in policy["Statement"] if any(a.startswith("iam:") for a in actions(s))
    ]
    return all(
        actions(s) == ["iam:PassRole"]
        and "*" not in "".join(s["Resource"])
        and "iam:PassedToService" in s["Condition"]["StringLike"]
        for s in iam_statements
    )


# Finding -> why it is allowed on a policy, checked on the policy itself.
ALLOWED = {
    "RESOURCE_MISMATCH": covered_elsewhere,
    "PERMISSIONS_MANAGEMENT_ACTIONS": lambda policy, finding: pass_role_only(policy),
    # PassRole + ec2:RunInstances: how EMR launches instances with the instance profile (AWS's
    # own managed policy does the same); the only role it may pass is this deployment's.
    "PRIVILEGE_ESCALATION": lambda policy, finding: (
        pass_role_only(policy)
        and "ec2:RunInstances" in {a for s in policy["Statement"] for a in actions(s)}
    ),
}


def findings(policy) -> list:
    report = parliament.analyze_policy_string(json.dumps(policy), include_community_auditors=True)
    return [f for f in report.findings if not ALLOWED.get(f.issue, lambda *_: False)(policy, f)]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("name", iam.POLICIES)
def test_parliament_finds_nothing(name, settings):
    policy = iam.render(name, config(settings))
    assert [(f.issue, f.detail) for f in findings(policy)] == []


def test_parliament_catches_describe_actions_scoped_to_arns():
    """The defect this lint exists for: ec2:Describe* accept only "*" (the old service role)."""
    policy = iam.document(
        [
            iam.statement(
                "Describe",
                ["ec2:DescribeInstances", "ec2:DescribeSubnets"],
                ["arn:aws:ec2:eu-west-1:123456789012:instance/*"],
            )
        ]
    )
    assert [f.issue for f in findings(policy)] == ["RESOURCE_MISMATCH"]


@pytest.mark.parametrize("name", iam.POLICIES)
def test_star_only_for_actions_that_take_no_resource_arn(name):
    """No wildcard action; "*" as resource only where AWS's tables name no required resource type
    (RunJobFlow, ListClusters, most ec2:Describe*...): everything else is scoped."""
    for statement in iam.render(name, config())["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in actions(statement)), statement
        if "*" in statement["Resource"]:
            for action in actions(statement):
                required = [r for r in resource_types(action) if r["resource_type"].endswith("*")]
                assert not required, (action, required)


# --- the EMR service role: AWS's managed policy, narrowed ---------------------------------------


def test_the_managed_policy_copy_is_the_one_moto_ships():
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    shipped = json.loads(aws_managed_policies_data)["AmazonEMRServicePolicy_v2"]
    copy = iam.managed_emr_service_policy()
    assert (copy["DefaultVersionId"], copy["UpdateDate"]) == (
        shipped["DefaultVersionId"],
        shipped["UpdateDate"],
    ), "AWS published a new version: review it, then update iam/aws-managed/"
    assert copy["Document"] == shipped["Document"]


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_service_role_keeps_every_statement_action_and_condition(settings):
    managed = iam.managed_emr_service_policy()["Document"]["Statement"]
    rendered = iam.render("emr-service-role", config(settings))["Statement"]
    for original in managed:
        sids = (original["Sid"], f"{original['Sid']}InThisAccount")
        kept = [s for s in rendered if s["Sid"] in sids]
        assert sorted(a for s in kept for a in actions(s)) == sorted(actions(original))
        assert all(s.get("Condition") == original.get("Condition") for s in kept), original["Sid"]
    every = {a for s in managed for a in actions(s)}
    assert every == {a for s in rendered for a in actions(s)}


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_service_role_is_narrowed_to_this_region_account_subnet_and_roles(settings):
    run = config(settings)
    rendered = json.dumps(iam.render("emr-service-role", run))
    for arn in {r for s in json.loads(rendered)["Statement"] for r in iam.as_list(s["Resource"])}:
        if arn == "*":
            continue
        _, partition, service, region, account, _ = arn.split(":", 5)
        assert partition == "aws"
        assert region in ("", run.region) and account in ("", run.aws_account_id), arn
    assert "EMR_EC2_DefaultRole" not in rendered
    assert f"role/{run.emr.instance_role}" in rendered
    if run.emr.subnet_id:
        assert "subnet/*" not in rendered and f"subnet/{run.emr.subnet_id}" in rendered


def test_the_resource_types_given_to_star_actions_are_awss():
    """The table that narrows AWS's "*" resources: every type AWS lists for each action (so a
    request naming any of them is still granted), and every star action that can be narrowed."""
    run = config()
    arns = iam.Arns(run)
    for action, (service, kinds) in iam.RESOURCE_TYPES_OF_STAR_ACTIONS.items():
        ours = [arns.of(service, kind) for kind in kinds]
        theirs = [arn_format(action, r["resource_type"]) for r in resource_types(action)]
        for fmt in theirs:
            assert any(parliament.is_arn_match("", fmt, arn) for arn in ours), (action, fmt)
        for arn in ours:
            assert any(parliament.is_arn_match("", fmt, arn) for fmt in theirs), (action, arn)
    managed = iam.managed_emr_service_policy()["Document"]["Statement"]
    on_star = {a for s in managed if iam.as_list(s["Resource"]) == ["*"] for a in actions(s)}
    narrowable = {
        a for a in on_star if any(r["resource_type"].endswith("*") for r in resource_types(a))
    }
    assert narrowable == set(iam.RESOURCE_TYPES_OF_STAR_ACTIONS)


def test_the_job_flow_carries_the_tags_the_policies_require():
    """The Airflow role creates only project-tagged clusters; the service role launches only
    what carries the EMR managed-policy tag: the DAG's RunJobFlow request has both."""
    run = config("moved")
    request = emr.job_flow(
        run, "s3://fruits-lake/deploy/code/abc", "scheduled__2026-11-25", "s3://fruits-lake/w"
    )
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    (create,) = [
        s
        for s in iam.render("airflow-role", run)["Statement"]
        if "elasticmapreduce:RunJobFlow" in actions(s)
    ]
    for key, value in create["Condition"]["StringEquals"].items():
        assert tags[key.removeprefix("aws:RequestTag/")] == value == "fruits-staging"
    service = json.dumps(iam.render("emr-service-role", run))
    assert f'"aws:RequestTag/{emr.EMR_MANAGED_POLICIES_TAG["Key"]}": "true"' in service
    assert tags[emr.EMR_MANAGED_POLICIES_TAG["Key"]] == "true"


# --- the Airflow role -------------------------------------------------------------------------


# That the Airflow role grants exactly what the DAG calls is checked against the calls themselves,
# recorded over whole runs: tests/test_dag_emr_run.py.


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_airflow_role_reaches_only_project_tagged_clusters(settings):
    run = config(settings)
    policy = iam.render("airflow-role", run)
    for statement in policy["Statement"]:
        emr_actions = [a for a in actions(statement) if a.startswith("elasticmapreduce:")]
        access = {a: resource_types(a) for a in emr_actions}
        if any(access.values()):  # acts on a cluster: only one tagged with the project
            assert statement["Resource"] == [
                f"arn:aws:elasticmapreduce:{run.region}:{run.aws_account_id}:cluster/*"
            ]
            assert statement["Condition"] == {
                "StringEquals": {"aws:ResourceTag/project": run.project_tag}
            }
    # No way to tag a foreign cluster into scope: no EMR tagging action at all (AWS's tables).
    tagging = {
        f"elasticmapreduce:{p['privilege']}"
        for p in DEFINITIONS["elasticmapreduce"]["privileges"]
        if p["access_level"] == "Tagging"
    }
    assert {"elasticmapreduce:AddTags", "elasticmapreduce:RemoveTags"} <= tagging
    assert not tagging & {a for s in policy["Statement"] for a in actions(s)}


def test_the_airflow_role_passes_only_the_two_roles_to_their_services():
    run = config()
    passes = [
        s for s in iam.render("airflow-role", run)["Statement"] if "iam:PassRole" in actions(s)
    ]
    assert {
        (s["Resource"][0], s["Condition"]["StringLike"]["iam:PassedToService"]) for s in passes
    } == {
        (
            f"arn:aws:iam::{run.aws_account_id}:role/FruitsEmrServiceRole",
            "elasticmapreduce.amazonaws.com*",
        ),
        (f"arn:aws:iam::{run.aws_account_id}:role/FruitsEmrInstanceRole", "ec2.amazonaws.com*"),
    }


@pytest.mark.parametrize("settings", SETTINGS)
def test_airflow_writes_only_the_code_bundle_and_deletes_only_what_a_rerun_clears(settings):
    run = config(settings)
    policy = iam.render("airflow-role", run)
    lake = f"arn:aws:s3:::{run.lake_bucket}"
    writes = {
        (a, r)
        for s in policy["Statement"]
        for a in actions(s)
        for r in s["Resource"]
        if a in ("s3:PutObject", "s3:DeleteObject")
    }
    assert writes == {
        ("s3:PutObject", f"{lake}/{run.code_prefix}/*"),
        ("s3:DeleteObject", f"{lake}/{run.runs_prefix}/*"),
        ("s3:DeleteObject", f"{lake}/{run.vectors_prefix}/*"),
        ("s3:DeleteObject", f"{lake}/{run.moments_prefix}/*"),
    }
    bucket, key = run.weights_uri[len("s3://") :].split("/", 1)
    assert granted(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}")
    exported = (run.runs_prefix, run.features_prefix, run.quarantine_prefix, run.vectors_prefix)
    for prefix in (run.code_prefix, *exported):
        assert granted(policy, "s3:GetObject", f"{lake}/{prefix}/2026-11-25/x.parquet")
    assert not granted(policy, "s3:GetObject", f"{lake}/{run.landing_prefix}/Training/a.jpg")


# --- the cluster's instance profile ---------------------------------------------------------


def object_arn(uri: str, name: str | None = "part-0.parquet") -> str:
    """An object under the prefix `uri`, or (name None) the object `uri` itself."""
    path = uri[len("s3://") :].rstrip("/")
    return f"arn:aws:s3:::{path}" if name is None else f"arn:aws:s3:::{path}/{name}"


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_instance_profile_grants_what_the_jobs_read_and_write(settings):
    """From the jobs as they run (their --input/--output/--model-cache URIs), not from the
    policy's own list: a moved prefix that the policy missed fails here, not with a 403 on EMR."""
    run = config(settings)
    policy = iam.render("ec2-instance-profile", run)
    for job in pipeline_jobs(run):
        for uri in job.inputs.values():
            target = object_arn(uri, None) if uri == run.weights_uri else object_arn(uri)
            assert granted(policy, "s3:GetObject", target), target
        for uri in [*job.outputs.values(), *job.caches.values(), run.input_uri]:
            target = object_arn(uri)
            for action in (
                ["s3:GetObject"]
                if uri == run.input_uri
                else ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
            ):
                assert granted(policy, action, target), (action, target)
    log = object_arn(emr.job_flow(run, "s3://b/c", "r", "s3://b/w")["LogUri"], "j-1/node/x.gz")
    assert granted(policy, "s3:PutObject", log)
    for prefix in (
        run.features_prefix,
        run.quarantine_prefix,
        run.vectors_prefix,
        run.moments_prefix,
    ):
        assert granted(policy, "s3:PutObject", f"arn:aws:s3:::{run.lake_bucket}/{prefix}/d=1/x")
    # Never the photos or the pinned weights.
    assert not granted(policy, "s3:PutObject", object_arn(run.input_uri))
    assert not granted(policy, "s3:DeleteObject", object_arn(run.weights_uri, None))


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", iam.POLICIES)
def test_the_policies_in_iam_are_rendered_from_the_example_settings(name):
    assert json.loads((iam.IAM_DIR / f"{name}.json").read_text()) == iam.render(name, config())


def test_the_command_line_renders_a_variable_file(tmp_path, capsys):
    variable = tmp_path / "fruits_config.json"
    variable.write_text(json.dumps(MOVED))
    policies.main(["airflow-role", str(variable)])
    assert json.loads(capsys.readouterr().out) == iam.render("airflow-role", config("moved"))
    variable.write_text(json.dumps({**MOVED, "aws_account_id": ""}))
    with pytest.raises(SystemExit, match="aws_account_id is required"):
        policies.main(["airflow-role", str(variable)])


def test_a_prefix_with_a_wildcard_stays_literal_in_a_policy():
    assert iam.literal("in/*/x?$") == "in/${*}/x${?}${$}"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("project_tag", "fruits*"),
        ("region", "eu-*"),
        ("aws_account_id", "12345"),
        ("emr_subnet_id", "subnet-*"),
        ("emr_instance_role", "Fruits*"),
        ("lake_kms_key_arn", "arn:aws:kms:us-east-2:123456789012:key/*"),
        ("lake_kms_key_arn", "arn:aws:kms:us-east-2:123456789012:alias/fruits-lake"),
    ],
)
def test_settings_that_would_widen_a_policy_are_refused(setting, value):
    with pytest.raises(ConfigError, match=setting):
        iam.config_from_variable({**EXAMPLE, setting: value})


@pytest.mark.parametrize("name", ["airflow-role", "ec2-instance-profile"])
def test_an_sse_kms_lake_grants_its_key_through_s3_only(name):
    """Both roles read and write lake objects: on a bucket encrypted with SSE-KMS, S3 calls KMS
    as the caller, kms:Decrypt for a GetObject and kms:GenerateDataKey for a PutObject or a
    multipart upload, which also needs kms:Decrypt to complete (Amazon S3 User Guide, "Using
    server-side encryption with AWS KMS keys (SSE-KMS)", Permissions; "Multipart upload API and
    permissions"). Granted on the configured key only, only through S3 in the lake's region;
    without a key, no KMS action at all. (test_parliament_finds_nothing[...-sse-kms] lints it.)"""
    policy = iam.render(name, config("sse-kms"))
    kms = [s for s in policy["Statement"] if any(a.startswith("kms:") for a in actions(s))]
    assert len(kms) == 1
    assert sorted(actions(kms[0])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms[0]["Resource"] == [KMS_KEY]
    assert kms[0]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-2.amazonaws.com"}}
    for plain in ("example", "moved"):
        rendered = iam.render(name, config(plain))["Statement"]
        assert not [a for s in rendered for a in actions(s) if a.startswith("kms:")]
