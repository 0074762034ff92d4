"""The export's checksum holds however S3 and Azure stored the bytes: the stores' own hashes are
not trusted, because neither store promises them.

S3: the S3 API reference, `Object` data type, member `ETag` (https://docs.aws.amazon.com/AmazonS3/
latest/API/API_Object.html; the same text ships in botocore's `data/s3/2006-03-01/service-2.json`,
read below), and the user guide's "Checking object integrity in Amazon S3": an ETag is an MD5 of
the object only for a single-part PUT/POST/Copy stored in plaintext or SSE-S3; SSE-KMS and SSE-C
ETags are not, and a multipart upload's never is. A real SSE-KMS ETag still looks like one: 32 hex
digits.

Azure: azure-storage-blob (12.31.1) `_shared/models.py::StorageConfiguration` sets
`max_single_put_size = 64 * 1024 * 1024`, and `_upload_helpers.py::upload_block_blob` does a
single Put Blob (for which the service stores a Content-MD5) only up to that size; above it, it
stages blocks and calls `commit_block_list`, and Put Block List sets no Content-MD5 unless the
client sends one (the provider's `WasbHook.load_file`, which `S3ToAzureBlobStorageOperator` uses,
sends none).

The fakes below serve each case's ETag and Content-MD5 as the real stores would; the verification
must pass for the same bytes and fail, naming both SHA-256s, for other bytes of the same size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import botocore
import pytest
from azure.storage.blob import BlobServiceClient, ContentSettings
from botocore.response import StreamingBody

from fruits import export

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
AZURE_SINGLE_PUT_LIMIT = 64 * MIB  # StorageConfiguration.max_single_put_size's default
BUCKET, CONTAINER = "lake", "published"
SOURCES = export.ExportSources(BUCKET, {"features": "features/ingest_date=2026-11-30"})
TARGET = export.ExportTarget(CONTAINER, "fruits", "2026-11-30", "fruits/runs/2026-11-30", "run1")


def etag_is_md5(multipart: bool, encryption: str) -> bool:
    """AWS's rule (API_Object, ETag)."""
    return not multipart and encryption in ("none", "AES256")


def blob_has_content_md5(size: int, max_single_put_size: int = AZURE_SINGLE_PUT_LIMIT) -> bool:
    """The Azure SDK's rule (upload_block_blob): one Put Blob up to the limit, blocks above."""
    return size <= max_single_put_size


def test_the_etag_rule_is_the_one_aws_documents():
    model = Path(botocore.__file__).parent / "data/s3/2006-03-01/service-2.json.gz"
    doc = json.loads(gzip.decompress(model.read_bytes()))["shapes"]["Object"]["members"]["ETag"]
    text = doc["documentation"]
    assert "encrypted by SSE-S3 or plaintext, have ETags that are an MD5 digest" in text
    assert "encrypted by SSE-C or SSE-KMS, have ETags that are not an MD5 digest" in text
    assert "Multipart Upload or Part Copy operation, the ETag is not an MD5 digest" in text
    assert [etag_is_md5(False, e) for e in ("none", "AES256", "aws:kms", "SSE-C")] == [
        True,
        True,
        False,
        False,
    ]
    assert not any(etag_is_md5(True, e) for e in ("none", "AES256", "aws:kms", "SSE-C"))


def test_the_azure_sdk_uploads_in_blocks_above_64_mib():
    client = BlobServiceClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/a;"
    )
    assert client._config.max_single_put_size == AZURE_SINGLE_PUT_LIMIT
    from azure.storage.blob import _upload_helpers

    source = Path(_upload_helpers.__file__).read_text()
    assert "adjusted_count <= blob_settings.max_single_put_size" in source
    assert "commit_block_list" in source


# --- the stores, as the rules above make them ------------------------------------------------


def s3_etag(body: bytes, multipart: bool, encryption: str) -> str:
    if multipart:  # MD5 of the parts' MD5s, "-" and the number of parts
        parts = [body[i : i + 5 * MIB] for i in range(0, len(body), 5 * MIB)]
        digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
        return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"
    if etag_is_md5(multipart, encryption):
        return hashlib.md5(body, usedforsecurity=False).hexdigest()
    return hashlib.md5(b"opaque" + body, usedforsecurity=False).hexdigest()  # 32 hex, not the MD5


@dataclass
class FakeS3Hook:
    """S3Hook's listing (ETag as S3 gives it) and get_key().get()["Body"] (botocore's own
    StreamingBody)."""

    objects: dict[str, tuple[bytes, str]]  # key -> (bytes, ETag)

    def iter_file_metadata(self, prefix: str, bucket_name: str):
        for key, (body, etag) in self.objects.items():
            if bucket_name == BUCKET and key.startswith(prefix):
                yield {"Key": key, "Size": len(body), "ETag": f'"{etag}"'}

    def get_key(self, key: str, bucket_name: str):
        body = self.objects[key][0]
        return SimpleNamespace(get=lambda: {"Body": StreamingBody(io.BytesIO(body), len(body))})


@dataclass
class FakeWasbHook:
    """WasbHook's container listing (Content-MD5 as Azure keeps it), download and uploads."""

    blobs: dict[str, tuple[bytes, bytes | None]]  # name -> (bytes, Content-MD5)

    @property
    def blob_service_client(self):
        return self

    def get_container_client(self, container: str):
        return self

    def list_blobs(self, name_starts_with: str):
        return [
            SimpleNamespace(
                name=name, size=len(body), content_settings=ContentSettings(content_md5=md5)
            )
            for name, (body, md5) in self.blobs.items()
            if name.startswith(name_starts_with)
        ]

    def download(self, container: str, blob_name: str):
        body = self.blobs[blob_name][0]
        return SimpleNamespace(
            chunks=lambda: (body[i : i + 4 * MIB] for i in range(0, len(body), 4 * MIB))
        )

    def load_string(self, data: str, container_name: str, blob_name: str, **_):
        self.put(blob_name, data.encode())

    def delete_file(self, container: str, blob_name: str):
        del self.blobs[blob_name]

    def put(self, name: str, body: bytes, max_single_put_size: int = AZURE_SINGLE_PUT_LIMIT):
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        self.blobs[name] = (
            body,
            md5 if blob_has_content_md5(len(body), max_single_put_size) else None,
        )


CASES = [  # (multipart, encryption): every way S3 stores an object
    (False, "none"),
    (False, "AES256"),
    (False, "aws:kms"),
    (False, "SSE-C"),
    (True, "none"),
    (True, "aws:kms"),
]


@pytest.mark.parametrize("blocks", [False, True], ids=["single-put-blob", "block-blob"])
@pytest.mark.parametrize("multipart, encryption", CASES)
def test_the_same_bytes_pass_and_other_bytes_fail_whatever_the_stores_hashes(
    multipart, encryption, blocks
):
    body = bytes(range(256)) * 40 * (1 + multipart * 1024)  # multipart: 10 MiB, 2 parts
    key = "features/ingest_date=2026-11-30/part-0.parquet"
    s3 = FakeS3Hook({key: (body, s3_etag(body, multipart, encryption))})
    wasb = FakeWasbHook({})
    blob = f"{TARGET.blob_prefix}/features/part-0.parquet"
    limit = 1024 if blocks else AZURE_SINGLE_PUT_LIMIT  # a small limit: what 64 MiB does
    wasb.put(blob, body, limit)
    assert (wasb.blobs[blob][1] is None) == blocks

    expected = export.expected_objects(s3, SOURCES)
    sums = export.verify_staged(s3, wasb, SOURCES, TARGET, expected)
    sha = hashlib.sha256(body).hexdigest()
    assert sums == {"features/part-0.parquet": {"s3": sha, "azure": sha}}  # the manifest's

    altered = body[:-1] + bytes([body[-1] ^ 1])  # the same size
    wasb.put(blob, altered, limit)
    with pytest.raises(export.ExportMismatch) as mismatch:
        export.verify_staged(s3, wasb, SOURCES, TARGET, expected)
    other = hashlib.sha256(altered).hexdigest()
    assert (
        f"content differs: features/part-0.parquet (SHA-256 in S3 {sha}, in Azure {other})"
        in str(mismatch.value)
    )


def test_s3_objects_are_hashed_in_bounded_chunks():
    """Memory is a chunk, not an object: the hash reads S3's body S3_READ_CHUNK at a time."""
    body = b"x" * (2 * export.S3_READ_CHUNK + 3)
    read_sizes = []

    class Body(StreamingBody):
        def read(self, amt=None):
            read_sizes.append(amt)
            return super().read(amt)

    hook = SimpleNamespace(
        get_key=lambda key, bucket_name: SimpleNamespace(
            get=lambda: {"Body": Body(io.BytesIO(body), len(body))}
        )
    )
    assert export.s3_sha256(hook, BUCKET, "k") == hashlib.sha256(body).hexdigest()
    assert read_sizes and set(read_sizes) == {export.S3_READ_CHUNK}


def test_each_clearing_of_a_run_publishes_into_a_folder_of_its_own():
    """A run cleared in the UI keeps its run id; Airflow counts the clearings in
    `DagRun.clear_number` (the DAG passes it to `export_target`). Each attempt writes a new
    folder, so a re-run never overwrites the copy LATEST.json points at."""
    run_id = "scheduled__2026-11-24T02:00:00+00:00"
    folders = [export.attempt_name(run_id, clearing) for clearing in range(3)]
    assert folders == [
        "scheduled__2026-11-24T02_00_00_00_00",
        "scheduled__2026-11-24T02_00_00_00_00.1",
        "scheduled__2026-11-24T02_00_00_00_00.2",
    ]
