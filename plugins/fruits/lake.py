"""What the DAG does with the lake and the published copy, through the providers' hooks.

- the Spark code bundle, uploaded under a content-addressed prefix (skipped when already there);
- the pinned weights artifact, checked against its sha256;
- the night's photos, counted before anything is started;
- the export's verification: every object the night published (its features and quarantine
  partitions, runs/<date>/) must be in Azure with the same size (and MD5 where both sides have
  one), then a `LATEST.json` pointer for the date is written and older attempts of that date are
  removed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fruits.spark_steps import SHARED_MODULES
from fruits.wheel import build_wheel, wheel_filename

BUNDLE_MARKER = "_BUNDLE.json"  # written last: its presence means the bundle is complete
EXPORT_MANIFEST = "_EXPORT_MANIFEST.json"
LATEST = "LATEST.json"
# The jobs' shared helper as an installable library, for platforms without --py-files.
JOBIO_WHEEL = f"dist/{wheel_filename('fruits_jobio', '1.0')}"


class ExportMismatch(RuntimeError):
    """The copy in Azure differs from the run's outputs in S3."""


# --- S3 URIs ------------------------------------------------------------------------------


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def is_listing_noise(key: str) -> bool:
    """EMRFS folder markers and directory placeholders are not outputs."""
    return key.endswith("_$folder$") or key.endswith("/")


def list_objects(s3_hook, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Relative name -> {size, md5} of every object under prefix/ (the slash matters:
    `runs/2026-11-2` must not match `runs/2026-11-25`)."""
    folder = prefix.rstrip("/") + "/"
    objects = {}
    for meta in s3_hook.iter_file_metadata(prefix=folder, bucket_name=bucket):
        key = meta["Key"]
        if is_listing_noise(key):
            continue
        etag = meta.get("ETag", "").strip('"')
        objects[key[len(folder) :]] = {
            "size": int(meta["Size"]),
            "md5": etag if "-" not in etag else None,  # multipart ETags are not MD5s
        }
    return objects


# The extensions featurize reads, in any case (spark_jobs/featurize.py, IMAGE_EXTENSIONS).
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_photo(key: str) -> bool:
    """Whether featurize would read an object of this name as a photo."""
    return key.lower().endswith(PHOTO_SUFFIXES)


def count_photos(s3_hook, bucket: str, prefix: str) -> int:
    """Objects under prefix/ whose name featurize would read as a photo."""
    keys = s3_hook.list_keys(bucket_name=bucket, prefix=prefix.rstrip("/") + "/") or []
    return sum(1 for key in keys if is_photo(key))


def clear_prefix(s3_hook, bucket: str, prefix: str) -> int:
    """Delete every object under prefix/; return how many there were."""
    keys = s3_hook.list_keys(bucket_name=bucket, prefix=prefix.rstrip("/") + "/") or []
    if keys:
        s3_hook.delete_objects(bucket=bucket, keys=keys)
    return len(keys)


# --- the code bundle ----------------------------------------------------------------------


def bundle_files(spark_jobs_dir: Path) -> dict[str, bytes]:
    """What runs on the cluster: the job scripts, their requirements, the bootstrap script,
    and the shared modules again as a wheel (Databricks installs libraries; EMR takes
    --py-files)."""
    patterns = ("*.py", "requirements.txt", "bootstrap/*.sh")
    paths = sorted({p for pattern in patterns for p in spark_jobs_dir.glob(pattern)})
    files = {p.relative_to(spark_jobs_dir).as_posix(): p.read_bytes() for p in paths}
    shared = {module: files[module] for module in SHARED_MODULES}
    files[JOBIO_WHEEL] = build_wheel("fruits_jobio", "1.0", shared)
    return files


def bundle_hash(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def upload_bundle(s3_hook, bucket: str, code_prefix: str, spark_jobs_dir: Path) -> str:
    """Upload spark_jobs/ to s3://bucket/code_prefix/<hash>/ unless it is there; return the URI."""
    files = bundle_files(spark_jobs_dir)
    digest = bundle_hash(files)
    prefix = f"{code_prefix}/{digest[:16]}"
    if not s3_hook.check_for_key(f"{prefix}/{BUNDLE_MARKER}", bucket_name=bucket):
        for name, content in files.items():
            s3_hook.load_bytes(content, key=f"{prefix}/{name}", bucket_name=bucket, replace=True)
        marker = {
            "sha256": digest,
            "files": {n: hashlib.sha256(c).hexdigest() for n, c in files.items()},
        }
        s3_hook.load_string(
            json.dumps(marker, indent=2),
            key=f"{prefix}/{BUNDLE_MARKER}",
            bucket_name=bucket,
            replace=True,
        )
    return f"s3://{bucket}/{prefix}"


# --- the weights artifact ---------------------------------------------------------------


def verify_weights(s3_hook, uri: str, expected_sha256: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(uri)
    if not s3_hook.check_for_key(key, bucket_name=bucket):
        raise FileNotFoundError(
            f"weights artifact {uri} is missing: upload the pinned .weights.h5 there "
            "(see README, Model weights) or fix fruits_config.weights_uri"
        )
    body = s3_hook.get_key(key, bucket_name=bucket).get()["Body"]
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != expected_sha256:
        raise ValueError(
            f"weights artifact {uri} has sha256 {digest.hexdigest()}, "
            f"but fruits_config.weights_sha256 pins {expected_sha256}: refusing to run"
        )
    return {"uri": uri, "sha256": expected_sha256, "size": size}


# --- the export ---------------------------------------------------------------------------


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
