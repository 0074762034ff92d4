"""iam/airflow-role.json enforced by a moto server (its IAM check on every request, as AWS does):
the lake calls the DAG's tasks make pass with exactly that policy; anything else is denied."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from fruits import lake as fruits_lake
from fruits.iam import render
from localdev.emulators import REGION, moto_server

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
BUCKET, OTHER_BUCKET = "fruits-lake", "someone-elses-bucket"
ACCOUNT_ID = "123456789012"  # moto's account


def client(service: str, url: str, key_id: str = "test", secret: str = "test"):  # noqa: S107
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


@pytest.fixture(scope="module")
def enforced(tmp_path_factory):
    """A lake, another bucket, and a user holding only the rendered airflow-role policy; then
    moto starts checking every request against IAM."""
    with moto_server() as url:
        admin_s3 = client("s3", url)
        for bucket in (BUCKET, OTHER_BUCKET):
            admin_s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        weights = b"pretend weights"
        admin_s3.put_object(Bucket=BUCKET, Key="models/w.weights.h5", Body=weights)
        admin_s3.put_object(Bucket=BUCKET, Key="runs/2026-11-25/pca/old.json", Body=b"{}")
        iam = client("iam", url)
        iam.create_user(UserName="fruits-airflow")
        policy = render(
            "airflow-role", {"LAKE_BUCKET": BUCKET, "REGION": REGION, "ACCOUNT_ID": ACCOUNT_ID}
        )
        iam.put_user_policy(
            UserName="fruits-airflow", PolicyName="fruits", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="fruits-airflow")["AccessKey"]
        reset_auth = urllib.request.Request(  # noqa: S310 (loopback)
            f"{url}/moto-api/reset-auth", b"0", {"Content-Type": "text/plain"}, method="POST"
        )
        urllib.request.urlopen(reset_auth, timeout=10).close()  # noqa: S310
        yield url, key["AccessKeyId"], key["SecretAccessKey"], hashlib.sha256(weights).hexdigest()


@pytest.fixture
def s3_hook(enforced, monkeypatch):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    url, key_id, secret, _ = enforced
    connection = {
        "conn_type": "aws",
        "login": key_id,
        "password": secret,
        "extra": {"region_name": REGION, "endpoint_url": url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FRUITS_AWS", json.dumps(connection))
    return S3Hook(aws_conn_id="fruits_aws")


def test_the_dags_lake_calls_pass_with_exactly_the_policy(enforced, s3_hook):
    *_, weights_sha256 = enforced
    code_uri = fruits_lake.upload_bundle(s3_hook, BUCKET, "code", REPO / "spark_jobs")
    assert code_uri.startswith(f"s3://{BUCKET}/code/")
    checked = fruits_lake.verify_weights(
        s3_hook, f"s3://{BUCKET}/models/w.weights.h5", weights_sha256
    )
    assert checked["size"] == len(b"pretend weights")
    # clear_prefix's batch DeleteObjects needs s3:DeleteObject on each key; moto checks that batch
    # against bucket policies only, so the same permission is shown with a single delete.
    s3_hook.get_conn().delete_object(Bucket=BUCKET, Key="runs/2026-11-25/pca/old.json")
    s3_hook.load_bytes(b"{}", key="runs/2026-11-25/pca/report.json", bucket_name=BUCKET)
    assert set(fruits_lake.list_objects(s3_hook, BUCKET, "runs/2026-11-25")) == {"pca/report.json"}


def test_anything_outside_the_policy_is_denied(enforced, s3_hook):
    url, key_id, secret, _ = enforced
    with pytest.raises(ClientError, match="Forbidden"):  # a HEAD first: 403 without a body
        s3_hook.load_bytes(b"x", key="stolen", bucket_name=OTHER_BUCKET)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3_hook.get_conn().put_object(Bucket=OTHER_BUCKET, Key="stolen", Body=b"x")
    with pytest.raises(ClientError, match="AccessDenied"):
        s3_hook.get_conn().delete_bucket(Bucket=BUCKET)
    with pytest.raises(ClientError, match="AccessDenied"):
        client("iam", url, key_id, secret).create_user(UserName="intruder")
    with pytest.raises(ClientError, match="AccessDenied"):  # listing every cluster: not granted
        client("emr", url, key_id, secret).list_clusters()
