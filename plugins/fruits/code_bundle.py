"""The Spark code bundle: `spark_jobs/` uploaded under a content-addressed prefix.

Skipped when the prefix already holds a complete bundle (its marker is written last), so every
run names the exact code it ran, and an unchanged `spark_jobs/` is uploaded once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fruits.spark_steps import LIBRARY, LIBRARY_ZIP, is_library_module
from fruits.wheel import build_wheel, wheel_filename

BUNDLE_MARKER = "_BUNDLE.json"  # written last: its presence means the bundle is complete
# What the cluster installs: every package pinned with its sha256 (make lock, from
# requirements.in), from a wheelhouse named by the lock's own sha256 (fruits.wheelhouse).
REQUIREMENTS_LOCK = "requirements.lock"
WHEELHOUSE_PREFIX = "wheelhouse"
# The jobs' library as an installable wheel, for platforms without --py-files (Databricks).
LIBRARY_WHEEL = f"dist/{wheel_filename(*LIBRARY)}"


def bundle_files(spark_jobs_dir: Path) -> dict[str, bytes]:
    """What runs on the cluster: the job scripts, their locked requirements, the bootstrap script,
    and the other modules as one library archive (a .zip for --py-files, a wheel for
    Databricks)."""
    patterns = ("*.py", REQUIREMENTS_LOCK, "bootstrap/*.sh")
    paths = sorted({p for pattern in patterns for p in spark_jobs_dir.glob(pattern)})
    files = {p.relative_to(spark_jobs_dir).as_posix(): p.read_bytes() for p in paths}
    library = build_wheel(*LIBRARY, {n: c for n, c in files.items() if is_library_module(n)})
    files[LIBRARY_WHEEL] = library
    files[LIBRARY_ZIP] = library  # a wheel is a zip: the same archive under a name Spark takes
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


def wheelhouse_uri(bucket: str, code_prefix: str, lock: bytes) -> str:
    """Where the wheels of a requirements lock live: a new lock is a new wheelhouse."""
    return (
        f"s3://{bucket}/{code_prefix}/{WHEELHOUSE_PREFIX}/{hashlib.sha256(lock).hexdigest()[:16]}"
    )
