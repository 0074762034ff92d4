"""The export over the wire, copied by the Azure provider's own S3ToAzureBlobStorageOperator from a
moto S3 server to Azurite, for the objects whose store hashes are no MD5: a multipart upload (as
Spark writes large Parquet), an SSE-KMS object, and blobs the SDK uploads in blocks.

Where moto departs from S3 it is corrected from S3's documentation: moto gives an SSE-KMS object
the MD5 of its bytes as ETag, S3 does not ("Objects ... encrypted by SSE-C or SSE-KMS, have ETags
that are not an MD5 digest of their object data": the S3 API reference, Object data type, ETag,
also in botocore's `data/s3/2006-03-01/service-2.json`). The blocks are forced the way production
gets them above 64 MiB: the Azure connection's extra goes to `BlobServiceClient` (the provider's
`WasbHook.get_conn`, `from_connection_string(connection_string, **extra)`), here with a 1 MiB
`max_single_put_size` (azure-storage-blob `_shared/models.py::StorageConfiguration`, default
64 MiB; `_upload_helpers.py::upload_block_blob` commits a block list above it, with no
Content-MD5).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import urllib.request
from unittest import mock

import pytest

from localdev import lake
from localdev.emulators import local_cloud

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
NIGHT = "2026-11-30"
SOURCES = {"features": f"features/ingest_date={NIGHT}", "run": f"runs/{NIGHT}"}
PARQUET = f"features/ingest_date={NIGHT}/part-00000.parquet"  # multipart, 2 parts
MODEL = f"runs/{NIGHT}/pca/model/part-00000"  # single part, 3 MiB: a block blob
REPORT = f"runs/{NIGHT}/pca/report.json"  # SSE-KMS, small: a single-put blob


def etag_as_s3_gives_it(moto_etag: property) -> property:
    """moto's ETag, except that a single-part SSE-KMS object's is no MD5 (32 hex digits still)."""

    def etag(key) -> str:
        value = moto_etag.fget(key)
        if getattr(key, "encryption", None) == "aws:kms" and "-" not in value:
            opaque = hashlib.sha256(b"sse-kms" + value.encode()).hexdigest()[:32]
            return f'"{opaque}"'
        return value

    return property(etag)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """A lake with the three kinds of objects; Airflow connections to moto and to Azurite (with
    a 1 MiB single-put limit)."""
    from moto.s3.models import FakeKey

    with (
        local_cloud(tmp_path_factory.mktemp("export-cloud"), threaded_moto=True) as endpoints,
        mock.patch.object(FakeKey, "etag", etag_as_s3_gives_it(FakeKey.etag)),
    ):
        reset = urllib.request.Request(f"{endpoints.s3_url}/moto-api/reset", b"", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 (loopback URL)
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        bodies = put_objects(s3, endpoints)
        env = endpoints.airflow_env()
        wasb = json.loads(env["AIRFLOW_CONN_FRUITS_WASB"])
        wasb["extra"].update(max_single_put_size=MIB, max_block_size=MIB)
        env["AIRFLOW_CONN_FRUITS_WASB"] = json.dumps(wasb)
        with mock.patch.dict(os.environ, env):
            yield endpoints, s3, bodies


def put_objects(s3, endpoints) -> dict[str, bytes]:
    import boto3

    kms = boto3.client(
        "kms",
        endpoint_url=endpoints.s3_url,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 (moto's placeholder credentials)
    )
    key_id = kms.create_key(Description="lake")["KeyMetadata"]["KeyId"]
    rng = random.Random(24)
    bodies = {
        PARQUET: rng.randbytes(6 * MIB),
        MODEL: rng.randbytes(3 * MIB),
        REPORT: json.dumps({"k": 7, "pad": "x" * 2000}).encode(),
    }
    upload = s3.create_multipart_upload(Bucket=lake.LAKE_BUCKET, Key=PARQUET)["UploadId"]
    parts = []
    for number, part in enumerate((bodies[PARQUET][: 5 * MIB], bodies[PARQUET][5 * MIB :]), 1):
        etag = s3.upload_part(
            Bucket=lake.LAKE_BUCKET, Key=PARQUET, UploadId=upload, PartNumber=number, Body=part
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=lake.LAKE_BUCKET, Key=PARQUET, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    s3.put_object(Bucket=lake.LAKE_BUCKET, Key=MODEL, Body=bodies[MODEL])
    s3.put_object(
        Bucket=lake.LAKE_BUCKET,
        Key=REPORT,
        Body=bodies[REPORT],
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_id,
    )
    return bodies


def copy_with_the_providers_operator(target) -> None:
    """As the DAG's publish.copy_to_azure does: one operator per exported folder."""
    from airflow.providers.microsoft.azure.transfers.s3_to_wasb import S3ToAzureBlobStorageOperator

    from fruits import export

    sources = export.ExportSources(lake.LAKE_BUCKET, SOURCES)
    for number, copy in enumerate(export.export_copies(sources, target)):
        S3ToAzureBlobStorageOperator(
            task_id=f"copy_to_azure_{number}",
            aws_conn_id="fruits_aws",
            wasb_conn_id="fruits_wasb",
            create_container=True,
            replace=True,
            **copy,
        ).execute({})


def test_multipart_kms_and_block_blobs_verify_and_an_altered_blob_is_named(cloud):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from fruits import export

    endpoints, s3, bodies = cloud
    md5 = {
        key: hashlib.md5(body, usedforsecurity=False).hexdigest() for key, body in bodies.items()
    }
    etags = {key: s3.head_object(Bucket=lake.LAKE_BUCKET, Key=key)["ETag"] for key in bodies}
    assert etags[PARQUET].endswith('-2"') and etags[MODEL] == f'"{md5[MODEL]}"'
    assert len(etags[REPORT]) == 34 and etags[REPORT] != f'"{md5[REPORT]}"'  # SSE-KMS, as S3

    target = export.ExportTarget(lake.CONTAINER, "fruits", NIGHT, f"fruits/runs/{NIGHT}", "run1")
    copy_with_the_providers_operator(target)
    wasb = WasbHook(wasb_conn_id="fruits_wasb")
    blob_of = {
        PARQUET: f"{target.blob_prefix}/features/part-00000.parquet",
        MODEL: f"{target.blob_prefix}/run/pca/model/part-00000",
        REPORT: f"{target.blob_prefix}/run/pca/report.json",
    }
    stored_md5 = {
        key: wasb.blob_service_client.get_blob_client(lake.CONTAINER, blob)
        .get_blob_properties()
        .content_settings.content_md5
        for key, blob in blob_of.items()
    }
    assert stored_md5[PARQUET] is None and stored_md5[MODEL] is None  # committed from blocks
    assert bytes(stored_md5[REPORT]).hex() == md5[REPORT]  # one Put Blob

    verify = lambda: export.verify_and_publish(  # noqa: E731
        S3Hook(aws_conn_id="fruits_aws"),
        wasb,
        export.ExportSources(lake.LAKE_BUCKET, SOURCES),
        target,
        "run1",
    )
    assert verify() == {
        "objects": 3,
        "total_bytes": 9 * MIB + len(bodies[REPORT]),
        "prefix": "fruits/runs/2026-11-30/attempt=run1/",
    }
    run_folder = target.destination(SOURCES["run"])
    manifest = json.loads(wasb.read_file(lake.CONTAINER, f"{run_folder}/{export.EXPORT_MANIFEST}"))
    sha = {key: hashlib.sha256(body).hexdigest() for key, body in bodies.items()}
    assert {o["s3_key"]: o["sha256"] for o in manifest["objects"].values()} == sha

    # The same size, one byte flipped, uploaded in blocks as the copy was: no MD5 anywhere.
    copy_with_the_providers_operator(target)  # a published attempt leaves no staging: again
    altered = bytearray(bodies[PARQUET])
    altered[3 * MIB] ^= 0xFF
    wasb.upload(lake.CONTAINER, blob_of[PARQUET], bytes(altered), overwrite=True)
    with pytest.raises(export.ExportMismatch) as mismatch:
        verify()
    other = hashlib.sha256(altered).hexdigest()
    name = "features/part-00000.parquet"
    assert str(mismatch.value).splitlines()[1:] == [
        f"content differs: {name} (SHA-256 in S3 {sha[PARQUET]}, in Azure {other})"
    ]
