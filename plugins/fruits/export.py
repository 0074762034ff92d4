"""The export's verification: every object the night published (its features and quarantine
partitions, runs/<date>/) must be in Azure with the same size and the same SHA-256; the export
manifest records both; then a `LATEST.json` pointer for the date is written and older attempts
of that date removed.

Why SHA-256 of the bytes on both sides, and not what the stores say of their objects: an S3 ETag
is an MD5 of the object only for a single-part upload in plaintext or SSE-S3 (not for multipart,
as Spark writes large Parquet, nor for any SSE-KMS or SSE-C object: the S3 API reference, Object
data type, `ETag`), and Azure keeps a blob's Content-MD5 only when one request uploaded it (the
SDK commits blobs above `max_single_put_size`, 64 MiB by default, from blocks, and Put Block List
sets no MD5). Each side is streamed once, in chunks, through the providers' hooks: the cost is
the night's exported bytes read twice, the memory a chunk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fruits.lake import list_objects

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


def verify_and_publish(
    s3_hook, wasb_hook, sources: ExportSources, target: ExportTarget, run_id: str
) -> dict[str, Any]:
    """Check the copy object by object; then point LATEST.json at it and drop older attempts."""
    expected = expected_objects(s3_hook, sources)
    if not expected:
        raise ExportMismatch(f"nothing to export from s3://{sources.bucket}/ {sources.prefixes}")
    actual = list_blobs(wasb_hook, target.container, target.blob_prefix)
    actual.pop(EXPORT_MANIFEST, None)
    problems = compare_listings(expected, actual)
    sums = {} if problems else checksums(s3_hook, wasb_hook, sources, target, expected)
    problems += compare_contents(sums)
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
        "objects": {name: {**meta, "sha256": sums[name]["s3"]} for name, meta in expected.items()},
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
