"""The lake bucket through the Amazon provider's S3Hook: URIs, listings, the night's photos.

Listings leave out what is no object of the night (folder markers, Spark's own files), the
night's photos are counted before anything starts, and a prefix is cleared before a re-run.
"""

from __future__ import annotations

from typing import Any


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def is_listing_noise(key: str) -> bool:
    """EMRFS folder markers and directory placeholders are not outputs."""
    return key.endswith("_$folder$") or key.endswith("/")


def list_objects(s3_hook, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Relative name -> {size} of every object under prefix/ (the slash matters:
    `runs/2026-11-2` must not match `runs/2026-11-25`). No ETag: it is an MD5 of the object only
    for single-part uploads without SSE-KMS or SSE-C (fruits.export hashes the bytes instead)."""
    folder = prefix.rstrip("/") + "/"
    return {
        meta["Key"][len(folder) :]: {"size": int(meta["Size"])}
        for meta in s3_hook.iter_file_metadata(prefix=folder, bucket_name=bucket)
        if not is_listing_noise(meta["Key"])
    }


# The extensions featurize reads, in any case (spark_jobs/image_reading.py, IMAGE_EXTENSIONS).
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
