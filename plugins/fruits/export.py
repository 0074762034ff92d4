"""The night's export to Azure: its partitions as partitions of one table per dataset, verified.

Azure mirrors the lake's layout under `<azure_prefix>/`, one level deeper: the night's objects
under `<lake prefix>/attempt=<run id>/`, for instance
`fruits/features/ingest_date=2026-11-25/attempt=scheduled__2026-11-25T02_00_00_00_00/part-….parquet`
and `fruits/runs/2026-11-25/attempt=…/pca/report.json`. A reader of `fruits/features/` as one
table (Spark, Databricks, Synapse) gets `ingest_date` and `attempt` as partition columns and, at
rest, exactly one attempt per date.

A night is published in three steps, so a re-run of a date never leaves a reader of a table with
a half-copied or duplicated night:
1. the provider's operator copies the night into `<azure_prefix>/_staging/<date>/<attempt>/`
   (outside every table; Spark and Synapse skip `_` folders anyway); a failed copy stays there;
2. every object there is checked against the lake: name and size, then the SHA-256 of its bytes
   on both sides (below); then it is copied server-side into its table's `attempt=` folder, and
   the tables' listing is checked again;
3. `<azure_prefix>/<runs_prefix>/<date>/LATEST.json` names the new attempt, then every other
   attempt of the date and the date's staging are removed. Between the server-side copy and this
   removal (seconds) two attempts of the date coexist: a reader that must never see that filters
   `attempt` by the date's LATEST.json.

Why SHA-256 of the bytes on both sides, and not what the stores say of their objects: an S3 ETag
is an MD5 of the object only for a single-part upload in plaintext or SSE-S3 (not for multipart,
as Spark writes large Parquet, nor for any SSE-KMS or SSE-C object: the S3 API reference, Object
data type, `ETag`), and Azure keeps a blob's Content-MD5 only when one request uploaded it (the
SDK commits blobs above `max_single_put_size`, 64 MiB by default, from blocks, and Put Block List
sets no MD5). Each side is streamed once, in chunks, through the providers' hooks: the cost is
the night's exported bytes read twice, the memory a chunk. The staged copy is the one hashed:
the server-side copy into the tables moves bytes Azure already holds.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fruits.config import RunConfig
from fruits.lake import list_objects
from fruits.lake_layout import FEATURES, QUARANTINE, VECTORS

EXPORT_MANIFEST = "_EXPORT_MANIFEST.json"
LATEST = "LATEST.json"
S3_READ_CHUNK = 8 * 1024 * 1024  # bytes held at once while hashing an S3 object


class ExportMismatch(RuntimeError):
    """The copy in Azure differs from the run's outputs in S3."""


@dataclass(frozen=True)
class ExportSources:
    """What a night publishes: folder in the published copy -> prefix in the lake bucket."""

    bucket: str
    prefixes: dict[str, str]  # distinct folders: each copy empties its own before it starts


@dataclass(frozen=True)
class ExportTarget:
    container: str
    azure_prefix: str  # the published lake's root
    run_date: str
    date_prefix: str  # <azure_prefix>/<runs prefix>/<date>: where the date's LATEST.json is
    attempt: str  # a folder per DAG run and clearing: the provider's copy never overwrites

    @property
    def blob_prefix(self) -> str:
        """Where the operator copies this attempt to, before it is verified."""
        return f"{self.azure_prefix}/_staging/{self.run_date}/{self.attempt}"

    def partition(self, lake_prefix: str) -> str:
        """The folder of a lake prefix's night in Azure (all its attempts)."""
        return f"{self.azure_prefix}/{lake_prefix}"

    def destination(self, lake_prefix: str) -> str:
        """Where this attempt of a lake prefix's night is published."""
        return f"{self.partition(lake_prefix)}/attempt={self.attempt}"


def night_sources(config: RunConfig) -> ExportSources:
    """What a night exports, by its folder in the published copy: its partitions of the
    features, quarantine and vectors tables, and runs/<date>/ (its models and reports): never
    an earlier night's objects."""
    return ExportSources(
        bucket=config.lake_bucket,
        prefixes={
            FEATURES: config.features_partition_prefix,
            QUARANTINE: config.quarantine_partition_prefix,
            VECTORS: config.vectors_partition_prefix,
            "run": config.run_prefix,
        },
    )


def date_prefix(config: RunConfig) -> str:
    """Where a night's LATEST.json and attempts of runs/<date>/ live in Azure: the lake's
    runs/<date>/ under the published root."""
    return f"{config.azure_prefix}/{config.run_prefix}"


def export_target(config: RunConfig, run_id: str, clear_number: int = 0) -> ExportTarget:
    """A folder per DAG run and per clearing of it: a re-run never writes where LATEST.json
    points."""
    return ExportTarget(
        container=config.azure_container,
        azure_prefix=config.azure_prefix,
        run_date=config.run_date,
        date_prefix=date_prefix(config),
        attempt=attempt_name(run_id, clear_number),
    )


def attempt_name(run_id: str, clear_number: int = 0) -> str:
    """A DAG run id (and how many times the run was cleared) as a blob folder name."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{name}.{clear_number}" if clear_number else name


def export_copies(
    sources: ExportSources, target: ExportTarget, s3_region: str | None = None
) -> list[dict[str, Any]]:
    """One S3ToAzureBlobStorageOperator copy per source prefix (its s3_prefix takes no slash),
    reading S3 in the lake's region when one is given."""
    region = {"s3_extra_args": {"region_name": s3_region}} if s3_region else {}
    return [
        {
            "s3_bucket": sources.bucket,
            "s3_prefix": prefix,
            "container_name": target.container,
            "blob_prefix": f"{target.blob_prefix}/{folder}",
            **region,
        }
        for folder, prefix in sources.prefixes.items()
    ]


def expected_objects(s3_hook, sources: ExportSources) -> dict[str, dict[str, Any]]:
    """Every object the copy must hold, by its name relative to the copy's folder: its S3 key
    and size."""
    return {
        f"{folder}/{name}": {"s3_key": f"{prefix}/{name}", "size": meta["size"]}
        for folder, prefix in sources.prefixes.items()
        for name, meta in list_objects(s3_hook, sources.bucket, prefix).items()
    }


def list_blobs(wasb_hook, container: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Relative name -> {size} of every blob under prefix/."""
    folder = prefix.rstrip("/") + "/"
    client = wasb_hook.blob_service_client.get_container_client(container)
    return {
        blob.name[len(folder) :]: {"size": int(blob.size)}
        for blob in client.list_blobs(name_starts_with=folder)
    }


def sha256_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def s3_sha256(s3_hook, bucket: str, key: str) -> str:
    """The object's bytes as S3 serves them (decrypted, whatever the upload), streamed."""
    body = s3_hook.get_key(key, bucket_name=bucket).get()["Body"]
    try:
        return sha256_of(body.iter_chunks(S3_READ_CHUNK))
    finally:
        body.close()


def blob_sha256(wasb_hook, container: str, blob_name: str) -> str:
    """The blob's bytes, streamed in the SDK's download chunks (max_chunk_get_size)."""
    return sha256_of(wasb_hook.download(container, blob_name).chunks())


def compare_listings(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """What the listings alone show: a missing blob, a size that differs."""
    problems = [f"missing in Azure: {name}" for name in sorted(set(expected) - set(actual))]
    for name in sorted(set(expected) & set(actual)):
        want, got = expected[name]["size"], actual[name]["size"]
        if want != got:
            problems.append(f"size differs: {name} (S3 {want} B, Azure {got} B)")
    return problems


def checksums(
    s3_hook, wasb_hook, sources: ExportSources, target: ExportTarget, expected: dict[str, dict]
) -> dict[str, dict[str, str]]:
    """SHA-256 of each object in S3 and of its copy in Azure, by name."""
    return {
        name: {
            "s3": s3_sha256(s3_hook, sources.bucket, meta["s3_key"]),
            "azure": blob_sha256(wasb_hook, target.container, f"{target.blob_prefix}/{name}"),
        }
        for name, meta in sorted(expected.items())
    }


def compare_contents(sums: dict[str, dict[str, str]]) -> list[str]:
    return [
        f"content differs: {name} (SHA-256 in S3 {sha['s3']}, in Azure {sha['azure']})"
        for name, sha in sums.items()
        if sha["s3"] != sha["azure"]
    ]


def check(problems: list[str], where: str) -> None:
    if problems:
        raise ExportMismatch(
            f"{len(problems)} problem(s) in the export to {where}:\n" + "\n".join(problems)
        )


def verify_staged(
    s3_hook, wasb_hook, sources: ExportSources, target: ExportTarget, expected: dict[str, dict]
) -> dict[str, dict[str, str]]:
    """The staged copy against the lake, before any table shows it (so a bad copy never becomes
    visible): names and sizes from the listings, then the SHA-256 of every object's bytes on
    both sides. Returns the checksums, by name."""
    where = f"{target.container}/{target.blob_prefix}"
    check(
        compare_listings(expected, list_blobs(wasb_hook, target.container, target.blob_prefix)),
        where,
    )
    sums = checksums(s3_hook, wasb_hook, sources, target, expected)
    check(compare_contents(sums), where)
    return sums


def published_objects(wasb_hook, sources: ExportSources, target: ExportTarget) -> dict:
    """This attempt's objects in their tables, named as in `expected_objects`."""
    return {
        f"{folder}/{name}": meta
        for folder, prefix in sources.prefixes.items()
        for name, meta in list_blobs(
            wasb_hook, target.container, target.destination(prefix)
        ).items()
    }


def verify_and_publish(
    s3_hook, wasb_hook, sources: ExportSources, target: ExportTarget, run_id: str
) -> dict[str, Any]:
    """Check the staged copy object by object, publish it into its tables and check it there;
    then point LATEST.json at it and drop the date's other attempts and staging."""
    expected = expected_objects(s3_hook, sources)
    if not expected:
        raise ExportMismatch(f"nothing to export from s3://{sources.bucket}/ {sources.prefixes}")
    sums = verify_staged(s3_hook, wasb_hook, sources, target, expected)
    promote(wasb_hook, sources, target, expected)
    published = published_objects(wasb_hook, sources, target)
    check(compare_listings(expected, published), target.container)

    run_folder = target.destination(sources.prefixes["run"])
    folders = {
        folder: f"{target.destination(prefix)}/" for folder, prefix in sources.prefixes.items()
    }
    manifest = {
        "run_id": run_id,
        "sources": {
            folder: f"s3://{sources.bucket}/{prefix}/"
            for folder, prefix in sources.prefixes.items()
        },
        "destinations": folders,
        "objects": {name: {**meta, "sha256": sums[name]["s3"]} for name, meta in expected.items()},
        "total_bytes": sum(o["size"] for o in expected.values()),
    }
    wasb_hook.load_string(
        json.dumps(manifest, indent=2, sort_keys=True),
        container_name=target.container,
        blob_name=f"{run_folder}/{EXPORT_MANIFEST}",
        overwrite=True,
    )
    pointer = {
        "run_id": run_id,
        "attempt": target.attempt,
        "prefix": f"{run_folder}/",
        "folders": folders,
        "objects": len(expected),
    }
    wasb_hook.load_string(
        json.dumps(pointer, indent=2, sort_keys=True),
        container_name=target.container,
        blob_name=f"{target.date_prefix}/{LATEST}",
        overwrite=True,
    )
    remove_other_attempts(wasb_hook, sources, target)
    return {
        "objects": len(expected),
        "total_bytes": manifest["total_bytes"],
        "prefix": pointer["prefix"],
    }


def promote(wasb_hook, sources: ExportSources, target: ExportTarget, expected: dict) -> None:
    """Server-side copies (WasbHook.copy_blobs: Azure's Copy Blob, nothing through the worker)
    from the staging folder into each object's table, waited for."""
    for name in sorted(expected):
        folder, relative = name.split("/", 1)
        source = f"{target.blob_prefix}/{folder}/{relative}"
        destination = f"{target.destination(sources.prefixes[folder])}/{relative}"
        wasb_hook.copy_blobs(target.container, source, target.container, destination)
        wait_for_copy(wasb_hook, target.container, destination)


def wait_for_copy(wasb_hook, container: str, blob: str, timeout_s: float = 600) -> None:
    """Copy Blob may answer `pending`: the copy is done when the blob's copy status says so."""
    client = wasb_hook.blob_service_client.get_blob_client(container, blob)
    deadline = time.monotonic() + timeout_s
    while (status := client.get_blob_properties().copy.status) == "pending":
        if time.monotonic() > deadline:
            raise ExportMismatch(f"the copy of {blob} is still pending after {timeout_s:.0f} s")
        time.sleep(1)
    if status not in (None, "success"):
        raise ExportMismatch(f"the copy of {blob} ended {status}")


def remove_other_attempts(wasb_hook, sources: ExportSources, target: ExportTarget) -> None:
    """A date keeps exactly one copy in each table, the verified one LATEST.json points at;
    and no staging (this attempt's, or a failed one's)."""
    keep = f"{target.date_prefix}/{LATEST}"
    for prefix in sources.prefixes.values():
        partition, current = target.partition(prefix), target.destination(prefix) + "/"
        for name in list_blobs(wasb_hook, target.container, partition):
            full = f"{partition}/{name}"
            if not full.startswith(current) and full != keep:
                wasb_hook.delete_file(target.container, full)
    staging = target.blob_prefix.rsplit("/", 1)[0]
    wasb_hook.delete_file(target.container, staging + "/", is_prefix=True, ignore_if_missing=True)
