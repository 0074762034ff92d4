"""Looking at the local lake (moto) and the published copy (Azurite) from a test."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from localdev import lake

SAMPLE = Path(__file__).resolve().parents[1] / "localdev" / "sample"
# Spark names its part files with a random id per write: part-00000-<uuid>-c000.zstd.parquet
SPARK_WRITE_ID = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# and Spark ML a saved model's stage folders with each stage's random uid: 0_StringIndexer_<12 hex>
SPARK_ML_UID = re.compile(r"(/\d+_[A-Za-z]+)_[0-9a-f]{12}(?=/)")


def land_photos(s3, night: str, classes: tuple[str, ...], per_split: int, offset: int = 0) -> int:
    """Land `per_split` real photos per class and split of the bundled sample under
    landing/<night>/ (the app's layout), starting at `offset` in each folder, cycling."""
    landed = 0
    for split in ("Training", "Test"):
        for label in classes:
            photos = sorted(p for p in (SAMPLE / split / label).glob("*_100.jpg"))
            for i in range(per_split):
                photo = photos[(offset + i) % len(photos)]
                key = f"landing/{night}/{split}/{label}/{photo.name}"
                s3.upload_file(str(photo), lake.LAKE_BUCKET, key)
                landed += 1
    return landed


def list_lake(s3, prefix: str) -> dict[str, dict]:
    """Relative key -> {size, etag} of every object under prefix/ (the slash matters)."""
    folder = prefix.rstrip("/") + "/"
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=lake.LAKE_BUCKET, Prefix=folder
    ):
        for item in page.get("Contents", []):
            objects[item["Key"][len(folder) :]] = {
                "size": item["Size"],
                "etag": item["ETag"].strip('"'),
            }
    return objects


def without_write_ids(names) -> list[str]:
    """Object names with the random ids Spark puts in them removed: what a re-run can repeat."""
    return sorted(SPARK_ML_UID.sub(r"\1", SPARK_WRITE_ID.sub("", name)) for name in names)


def read_json(s3, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=lake.LAKE_BUCKET, Key=key)["Body"].read())


def read_parquet_rows(s3, prefix: str, columns: list[str]) -> list[dict]:
    """Every row of the Parquet files under prefix/, as dicts of the given columns."""
    rows = []
    for name in sorted(list_lake(s3, prefix)):
        if name.endswith(".parquet"):
            body = s3.get_object(Bucket=lake.LAKE_BUCKET, Key=f"{prefix}/{name}")["Body"].read()
            rows += pq.read_table(io.BytesIO(body), columns=columns).to_pylist()
    return rows


def latest_published(container_client, azure_prefix: str, night: str) -> dict | None:
    """The date's LATEST.json pointer in Azure (which run's copy is the published one)."""
    blob = container_client.get_blob_client(f"{azure_prefix}/runs/{night}/LATEST.json")
    return json.loads(blob.download_blob().readall()) if blob.exists() else None
