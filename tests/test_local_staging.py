"""The local platform stages a job's S3 inputs into a mirror of the lake: what a night downloads
must follow what changed in S3 since the last night, not the size of the lake (pca and classify
read the whole `features/` and `moments/` roots), and the mirror must never serve a stale file.
An in-memory S3Hook stands in for the provider's (the same calls: `check_for_key`,
`iter_file_metadata`, `get_conn().download_file`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fruits.local_platform import stage

pytestmark = pytest.mark.unit

ROOT = "s3://lake/features"


class MemoryS3Hook:
    def __init__(self):
        self.objects: dict[str, bytes] = {}  # key -> bytes, in bucket "lake"
        self.downloads: list[str] = []

    def check_for_key(self, key, bucket_name):
        return key in self.objects

    def iter_file_metadata(self, prefix, bucket_name):
        for key in sorted(self.objects):
            if key.startswith(prefix):
                body = self.objects[key]
                etag = f'"{hashlib.md5(body).hexdigest()}"'  # noqa: S324 (S3's single-part ETag)
                yield {"Key": key, "Size": len(body), "ETag": etag}

    def get_conn(self):
        return self

    def download_file(self, bucket, key, filename):
        self.downloads.append(key)
        Path(filename).write_bytes(self.objects[key])


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def s3():
    hook = MemoryS3Hook()
    for night in ("2026-11-01", "2026-11-02"):
        hook.objects[f"features/ingest_date={night}/part-0.parquet"] = night.encode()
    return hook


def test_a_prefix_is_mirrored_and_a_second_staging_downloads_nothing(s3, tmp_path):
    staged = stage(s3, ROOT, tmp_path)
    assert files(staged) == {
        "ingest_date=2026-11-01/part-0.parquet": b"2026-11-01",
        "ingest_date=2026-11-02/part-0.parquet": b"2026-11-02",
    }
    s3.downloads.clear()
    assert stage(s3, ROOT, tmp_path) == staged
    assert s3.downloads == []


def test_a_new_night_downloads_only_its_own_objects(s3, tmp_path):
    stage(s3, ROOT, tmp_path)
    s3.downloads.clear()
    s3.objects["features/ingest_date=2026-11-03/part-0.parquet"] = b"night 3"
    staged = stage(s3, ROOT, tmp_path)
    assert s3.downloads == ["features/ingest_date=2026-11-03/part-0.parquet"]
    assert len(files(staged)) == 3


def test_nothing_stale_is_served(s3, tmp_path):
    """Rewritten in S3 (a re-run), removed from S3 (a cleared night), changed in the mirror (a
    job writes into its caches; a failed one never uploads), or left by Spark (Hadoop's .crc)."""
    staged = stage(s3, ROOT, tmp_path)
    s3.objects["features/ingest_date=2026-11-01/part-0.parquet"] = b"re-run"
    del s3.objects["features/ingest_date=2026-11-02/part-0.parquet"]
    s3.objects["features/ingest_date=2026-11-03/part-0.parquet"] = b"night 3"
    stage(s3, ROOT, tmp_path)
    (staged / "ingest_date=2026-11-03" / "part-0.parquet").write_bytes(b"written by a job")
    (staged / "ingest_date=2026-11-03" / ".part-0.parquet.crc").write_bytes(b"crc")
    assert files(stage(s3, ROOT, tmp_path)) == {
        "ingest_date=2026-11-01/part-0.parquet": b"re-run",
        "ingest_date=2026-11-03/part-0.parquet": b"night 3",
    }


def test_an_empty_prefix_is_an_error_unless_it_is_a_cache(s3, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing under s3://lake/moments"):
        stage(s3, "s3://lake/moments", tmp_path)
    assert files(stage(s3, "s3://lake/moments", tmp_path, missing_ok=True)) == {}


def test_a_single_object_is_downloaded_to_its_place(s3, tmp_path):
    s3.objects["models/backbone.weights.h5"] = b"weights"
    staged = stage(s3, "s3://lake/models/backbone.weights.h5", tmp_path)
    assert staged == tmp_path / "lake" / "models" / "backbone.weights.h5"
    assert staged.read_bytes() == b"weights"
