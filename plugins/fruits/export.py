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
2. every object there is checked against the lake (name, size, MD5 where both sides have one),
   then copied server-side into its table's `attempt=` folder, and checked there again;
3. `<azure_prefix>/<runs_prefix>/<date>/LATEST.json` names the new attempt, then every other
   attempt of the date and the date's staging are removed. Between the server-side copy and this
   removal (seconds) two attempts of the date coexist: a reader that must never see that filters
   `attempt` by the date's LATEST.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from fruits.config import RunConfig
from fruits.lake import list_objects

EXPORT_MANIFEST = "_EXPORT_MANIFEST.json"
LATEST = "LATEST.json"


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
            "features": config.features_partition_prefix,
            "quarantine": config.quarantine_partition_prefix,
            "vectors": config.vectors_partition_prefix,
            "run": config.run_prefix,
        },
    )


def attempt_name(run_id: str, clear_number: int = 0) -> str:
    """A DAG run id (and how many times the run was cleared) as a blob folder name."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{name}.{clear_number}" if clear_number else name


def export_copies(sources: ExportSources, target: ExportTarget) -> list[dict[str, str]]:
    """One S3ToAzureBlobStorageOperator copy per source prefix (its s3_prefix takes no slash)."""
    return [
        {
            "s3_bucket": sources.bucket,
            "s3_prefix": prefix,
            "container_name": target.container,
            "blob_prefix": f"{target.blob_prefix}/{folder}",
        }
        for folder, prefix in sources.prefixes.items()
    ]


def expected_objects(s3_hook, sources: ExportSources) -> dict[str, dict[str, Any]]:
    """Every object the copy must hold, by its name relative to the copy's folder."""
    return {
        f"{folder}/{name}": meta
        for folder, prefix in sources.prefixes.items()
        for name, meta in list_objects(s3_hook, sources.bucket, prefix).items()
    }


def list_blobs(wasb_hook, container: str, prefix: str) -> dict[str, dict[str, Any]]:
    folder = prefix.rstrip("/") + "/"
    client = wasb_hook.blob_service_client.get_container_client(container)
    blobs = {}
    for blob in client.list_blobs(name_starts_with=folder):
        md5 = blob.content_settings.content_md5
        blobs[blob.name[len(folder) :]] = {
            "size": int(blob.size),
            "md5": bytes(md5).hex() if md5 else None,
        }
    return blobs


def compare(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """Every difference between the run's objects and the exported blobs, readable."""
    problems = [f"missing in Azure: {name}" for name in sorted(set(expected) - set(actual))]
    for name in sorted(set(expected) & set(actual)):
        want, got = expected[name], actual[name]
        if want["size"] != got["size"]:
            problems.append(f"size differs: {name} (S3 {want['size']} B, Azure {got['size']} B)")
        elif want.get("md5") and got.get("md5") and want["md5"] != got["md5"]:
            problems.append(f"content differs: {name} (MD5 {want['md5']} vs {got['md5']})")
    return problems


def check(expected: dict[str, dict], actual: dict[str, dict], where: str) -> None:
    problems = compare(expected, actual)
    if problems:
        raise ExportMismatch(
            f"{len(problems)} problem(s) in the export to {where}:\n" + "\n".join(problems)
        )


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
    staged = list_blobs(wasb_hook, target.container, target.blob_prefix)
    check(expected, staged, f"{target.container}/{target.blob_prefix}")
    promote(wasb_hook, sources, target, expected)
    check(expected, published_objects(wasb_hook, sources, target), target.container)

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
        "objects": expected,
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
