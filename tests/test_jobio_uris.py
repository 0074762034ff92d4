"""The jobs' URIs: qualified and joined the same way on every file system."""

import pytest

import jobio

pytestmark = pytest.mark.unit


def test_qualify_and_join():
    assert jobio.qualify("s3://bucket/x") == "s3://bucket/x"
    assert jobio.qualify("/tmp/x").startswith("file:///tmp/x")
    assert jobio.join("s3://b/runs/", "/features/", "_manifest.json") == (
        "s3://b/runs/features/_manifest.json"
    )


def test_qualify_keeps_every_scheme():
    for uri in (
        "dbfs:/mnt/lake/in",
        "s3a://b/k",
        "file:/tmp/x",
        "abfss://c@a.dfs.core.windows.net/x",
    ):
        assert jobio.qualify(uri) == uri
