"""Seeding the local lake: a bucket, the photos, the weights, and the `fruits_config` Variable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3

from localdev.emulators import REGION, Endpoints

LAKE_BUCKET = "fruits-lake"
WEIGHTS_KEY = "models/mobilenet_v2_1.0_no_top.weights.h5"
CONTAINER = "fruits-published"


def s3_client(endpoints: Endpoints):
    return boto3.client(
        "s3",
        endpoint_url=endpoints.s3_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 (moto's placeholder credentials)
    )


def create_lake(s3) -> None:
    s3.create_bucket(Bucket=LAKE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})


def upload_photos(s3, folder: Path, prefix: str = "landing") -> int:
    photos = sorted(p for p in folder.rglob("*") if p.is_file())
    for photo in photos:
        s3.upload_file(str(photo), LAKE_BUCKET, f"{prefix}/{photo.relative_to(folder).as_posix()}")
    return len(photos)


def upload_weights(s3, weights: Path) -> tuple[str, str]:
    """Upload the weights file; return its s3:// URI and sha256 (what fruits_config pins)."""
    s3.upload_file(str(weights), LAKE_BUCKET, WEIGHTS_KEY)
    return f"s3://{LAKE_BUCKET}/{WEIGHTS_KEY}", hashlib.sha256(weights.read_bytes()).hexdigest()


def fruits_config(weights_uri: str, weights_sha256: str, **overrides) -> dict:
    return {
        "region": REGION,
        "lake_bucket": LAKE_BUCKET,
        "landing_prefix": "landing",
        "weights_uri": weights_uri,
        "weights_sha256": weights_sha256,
        "azure_container": CONTAINER,
        "azure_prefix": "fruits",
        **overrides,
    }


def variable_env(config: dict) -> dict[str, str]:
    return {"AIRFLOW_VAR_FRUITS_CONFIG": json.dumps(config)}
