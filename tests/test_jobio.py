import pytest

import jobio

pytestmark = pytest.mark.spark


def test_bytes_and_json_round_trip_through_hadoop_fs(spark, tmp_path):
    uri = jobio.qualify(str(tmp_path / "a" / "b.bin"))
    payload = bytes(range(256)) * 5000  # 1.3 MB, every byte value
    jobio.write_bytes(spark, uri, payload)
    assert jobio.exists(spark, uri)
    assert jobio.read_bytes(spark, uri) == payload

    doc_uri = jobio.join(jobio.qualify(str(tmp_path)), "doc.json")
    jobio.write_json(spark, doc_uri, {"k": [1, 2], "name": "fruit"})
    assert jobio.read_json(spark, doc_uri) == {"k": [1, 2], "name": "fruit"}

    jobio.delete(spark, jobio.qualify(str(tmp_path / "a")))
    assert not jobio.exists(spark, uri)


def test_qualify_and_join():
    assert jobio.qualify("s3://bucket/x") == "s3://bucket/x"
    assert jobio.qualify("/tmp/x").startswith("file:///tmp/x")
    assert jobio.join("s3://b/runs/", "/features/", "_manifest.json") == (
        "s3://b/runs/features/_manifest.json"
    )
