"""The local lake: a bucket in the moto server, the photos, the weights, the `fruits_config`
Variable, and a copy on disk that outlives the server (a real lake does not forget)."""

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


def land_photos(s3, folder: Path, night: str) -> int:
    """Land every file of the folder under landing/<night>/, as the app would (replacing what an
    earlier landing of that night put there)."""
    prefix = f"landing/{night}/"
    for key in list_keys(s3, prefix):
        s3.delete_object(Bucket=LAKE_BUCKET, Key=key)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        s3.upload_file(str(path), LAKE_BUCKET, prefix + path.relative_to(folder).as_posix())
    return len(files)


def list_keys(s3, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE_BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def restore(s3, folder: Path) -> int:
    """Put the lake saved on disk back into a fresh bucket; how many objects."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    for path in files:
        s3.upload_file(str(path), LAKE_BUCKET, path.relative_to(folder).as_posix())
    return len(files)


def save(s3, folder: Path) -> int:
    """Make the folder hold exactly the bucket's objects (downloading only what changed)."""
    keys = set(list_keys(s3))
    for path in [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []:
        if path.relative_to(folder).as_posix() not in keys:
            path.unlink()
    for key in sorted(keys):
        path = folder / key
        head = s3.head_object(Bucket=LAKE_BUCKET, Key=key)
        unchanged = (
            path.is_file()
            and path.stat().st_size == head["ContentLength"]
            and head["ETag"].strip('"') == hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324
        )
        if unchanged:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(LAKE_BUCKET, key, str(path))
    return len(keys)


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
