"""Driver-side file I/O shared by the Spark jobs, through Hadoop's FileSystem API.

The jobs write small files (manifests, reports, plots) next to their Parquet outputs. Going
through the JVM's Hadoop FileSystem means one code path serves `file:` paths locally, `s3://`
on EMR (EMRFS) and `dbfs:`/`abfss:` on Databricks, with the cluster's own credentials: no boto3
and no secrets in the job. Only the driver imports this module; executor code never needs it.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Any

from pyspark.sql import SparkSession


def _fs_and_path(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, path


def qualify(uri: str) -> str:
    """A bare local path becomes an absolute `file:` URI; URIs with a scheme pass through."""
    if "://" in uri or uri.startswith("file:"):
        return uri
    return "file://" + os.path.abspath(uri)


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs_and_path(spark, uri)
    return bool(fs.exists(path))


def delete(spark: SparkSession, uri: str) -> None:
    fs, path = _fs_and_path(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    fs, path = _fs_and_path(spark, uri)
    stream = fs.open(path)
    try:
        # A byte[] returned by the JVM arrives in Python as bytes (py4j converts it whole).
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    fs, path = _fs_and_path(spark, uri)
    stream = fs.create(path, True)  # overwrite
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def write_json(spark: SparkSession, uri: str, document: dict[str, Any]) -> None:
    write_bytes(spark, uri, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def read_json(spark: SparkSession, uri: str) -> dict[str, Any]:
    return json.loads(read_bytes(spark, uri))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


@contextmanager
def stopwatch():
    """`with stopwatch() as elapsed: ...; elapsed()` gives seconds since the block started."""
    start = time.monotonic()
    yield lambda: round(time.monotonic() - start, 3)
