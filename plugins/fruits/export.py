"""The export's verification: every object the night published (its features and quarantine
partitions, runs/<date>/) must be in Azure with the same size (and MD5 where both sides have one);
then a `LATEST.json` pointer for the date is written and older attempts of that date removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
    date_prefix: str  # <azure_prefix>/<run date>
    attempt: str  # a folder per DAG run and clearing: the provider's copy never overwrites

    @property
    def blob_prefix(self) -> str:
        return f"{self.date_prefix}/{self.attempt}"


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


def verify_and_publish(
    s3_hook, wasb_hook, sources: ExportSources, target: ExportTarget, run_id: str
) -> dict[str, Any]:
    """Check the copy object by object; then point LATEST.json at it and drop older attempts."""
    expected = expected_objects(s3_hook, sources)
    if not expected:
        raise ExportMismatch(f"nothing to export from s3://{sources.bucket}/ {sources.prefixes}")
    actual = list_blobs(wasb_hook, target.container, target.blob_prefix)
    actual.pop(EXPORT_MANIFEST, None)
    problems = compare(expected, actual)
    if problems:
        raise ExportMismatch(
            f"{len(problems)} problem(s) in the export to "
            f"{target.container}/{target.blob_prefix}:\n" + "\n".join(problems)
        )
    manifest = {
        "run_id": run_id,
        "sources": {
            folder: f"s3://{sources.bucket}/{prefix}/"
            for folder, prefix in sources.prefixes.items()
        },
        "destination": f"{target.container}/{target.blob_prefix}/",
        "objects": expected,
        "total_bytes": sum(o["size"] for o in expected.values()),
    }
    wasb_hook.load_string(
        json.dumps(manifest, indent=2, sort_keys=True),
        container_name=target.container,
        blob_name=f"{target.blob_prefix}/{EXPORT_MANIFEST}",
        overwrite=True,
    )
    pointer = {"run_id": run_id, "prefix": f"{target.blob_prefix}/", "objects": len(expected)}
    wasb_hook.load_string(
        json.dumps(pointer, indent=2, sort_keys=True),
        container_name=target.container,
        blob_name=f"{target.date_prefix}/{LATEST}",
        overwrite=True,
    )
    remove_older_attempts(wasb_hook, target)
    return {
        "objects": len(expected),
        "total_bytes": manifest["total_bytes"],
        "prefix": target.blob_prefix,
    }


def remove_older_attempts(wasb_hook, target: ExportTarget) -> None:
    """A re-run of a date leaves exactly one copy: the verified one LATEST.json points at."""
    keep = (f"{target.blob_prefix}/", f"{target.date_prefix}/{LATEST}")
    for name in list_blobs(wasb_hook, target.container, target.date_prefix):
        full = f"{target.date_prefix}/{name}"
        if not full.startswith(keep[0]) and full != keep[1]:
            wasb_hook.delete_file(target.container, full)
