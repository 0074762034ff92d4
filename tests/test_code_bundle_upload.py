"""The code bundle is uploaded once per content: a run whose spark_jobs/ is already in the lake
sends no PUT (S3 through moto in-process, the requests counted as botocore sends them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fruits import code_bundle

pytestmark = pytest.mark.e2e  # an S3 emulator (moto)
SPARK_JOBS = Path(__file__).resolve().parents[1] / "spark_jobs"
BUCKET = "fruits-lake"


@pytest.fixture
def lake_hook(monkeypatch):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        hook = S3Hook(aws_conn_id=None, region_name="eu-west-1")
        hook.create_bucket(BUCKET, region_name="eu-west-1")
        yield hook


def puts(hook) -> list[str]:
    """The keys of every PutObject the hook's client sends from now on."""
    sent: list[str] = []
    hook.conn.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: sent.append(params["Key"])
    )
    return sent


def test_an_unchanged_bundle_is_uploaded_once(lake_hook):
    sent = puts(lake_hook)
    uri = code_bundle.upload_bundle(lake_hook, BUCKET, "code", SPARK_JOBS)
    files = code_bundle.bundle_files(SPARK_JOBS)
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    assert sorted(sent) == sorted(
        [f"{prefix}/{name}" for name in files] + [f"{prefix}/_BUNDLE.json"]
    )
    assert sent[-1] == f"{prefix}/{code_bundle.BUNDLE_MARKER}"  # the marker last

    sent.clear()
    assert code_bundle.upload_bundle(lake_hook, BUCKET, "code", SPARK_JOBS) == uri
    assert sent == []


def test_a_bundle_without_its_marker_is_uploaded_again(lake_hook):
    """An upload that stopped half-way left no marker: the next run completes it."""
    uri = code_bundle.upload_bundle(lake_hook, BUCKET, "code", SPARK_JOBS)
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    lake_hook.delete_objects(BUCKET, [f"{prefix}/{code_bundle.BUNDLE_MARKER}"])
    sent = puts(lake_hook)
    assert code_bundle.upload_bundle(lake_hook, BUCKET, "code", SPARK_JOBS) == uri
    assert len(sent) == len(code_bundle.bundle_files(SPARK_JOBS)) + 1
    marker = json.loads(lake_hook.read_key(f"{prefix}/{code_bundle.BUNDLE_MARKER}", BUCKET))
    assert set(marker["files"]) == set(code_bundle.bundle_files(SPARK_JOBS))
