"""Driver-side file I/O shared by the Spark jobs, through Hadoop's FileSystem API.

The jobs write small files (manifests, reports, plots) next to their Parquet outputs. Going
through the JVM's Hadoop FileSystem means one code path serves `file:` paths locally, `s3://`
on EMR (EMRFS) and `dbfs:`/`abfss:` on Databricks, with the cluster's own credentials: no boto3
and no secrets in the job. Only the driver calls it; modules the workers import may import it at
their top (it needs nothing beyond pyspark, and ships with the jobs' library).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession


def _fs_and_path(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, path


def qualify(uri: str) -> str:
    """A bare local path becomes an absolute `file:` URI; URIs with a scheme (s3://, dbfs:/,
    file:) pass through."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", uri):
        return uri
    return "file://" + os.path.abspath(uri)


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs_and_path(spark, uri)
    return bool(fs.exists(path))


def glob(spark: SparkSession, pattern: str) -> list[str]:
    """The URIs matching a Hadoop glob (`root/ingest_date=*/_manifest.json`), sorted. One listing
    call from the driver: on S3 a prefix listing, not a request per object."""
    fs, path = _fs_and_path(spark, pattern)
    statuses = fs.globStatus(path) or []
    return sorted(str(status.getPath().toString()) for status in statuses)


def delete(spark: SparkSession, uri: str) -> None:
    fs, path = _fs_and_path(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    """The whole object, through a local copy: py4j passes a large byte[] slowly (a weights file
    took most of a second), a file the driver reads itself takes milliseconds."""
    fs, path = _fs_and_path(spark, uri)
    with _local_file(spark) as (local, local_path):
        fs.copyToLocalFile(False, path, local_path, True)  # keep the source; write no .crc
        with open(local, "rb") as handle:
            return handle.read()


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    """Create or replace the object, from a local copy (the reverse of read_bytes)."""
    fs, path = _fs_and_path(spark, uri)
    with _local_file(spark) as (local, local_path):
        with open(local, "wb") as handle:
            handle.write(data)
        fs.copyFromLocalFile(False, True, local_path, path)  # keep the source; overwrite


@contextmanager
def _local_file(spark: SparkSession):
    """A scratch file on the driver, as a path for Python and as a Hadoop Path for the JVM."""
    with tempfile.TemporaryDirectory(prefix="jobio-") as scratch:
        local = os.path.join(scratch, "object")
        yield local, spark.sparkContext._jvm.org.apache.hadoop.fs.Path("file://" + local)


def list_files(spark: SparkSession, uri: str) -> dict[str, str | None]:
    """Every file under `uri`, recursively and whatever its name, as the path strings Spark's
    `path` column shows (`file:/in/a b.jpg`, `s3://lake/in/_DSC0001.JPG`), each with the reason
    it cannot be read when the listing already tells (a broken symbolic link), else None.

    One recursive `FileSystem.listFiles`: a flat listing on S3 (a request per 1,000 objects, no
    request per object), and no rule of Spark's DataFrame reader, which skips names starting
    with `_` or `.`. A local folder is walked with `os.scandir` instead: Hadoop's local file
    system starts an `ls` process per file to fill in its permissions and leaves
    broken symbolic links out. Raises FileNotFoundError when nothing is at `uri`.
    """
    if uri.startswith("file:"):
        return _list_local_files("/" + uri[len("file:") :].lstrip("/"))
    return dict.fromkeys(hadoop_list_files(spark, uri))


def hadoop_list_files(spark: SparkSession, uri: str) -> list[str]:
    fs, path = _fs_and_path(spark, uri)
    if not fs.exists(path):
        raise FileNotFoundError(uri)
    remote_iterators = spark.sparkContext._jvm.org.apache.hadoop.util.functional.RemoteIterators
    return path_strings(spark, remote_iterators.toList(fs.listFiles(path, True)))


def path_strings(spark: SparkSession, statuses, separator: str = "\0") -> list[str]:
    """The paths of a Java list of FileStatus in a few py4j calls, not two per file (100,000
    files would take seconds): joined in the JVM, split here.

    py4j matches array arguments by their exact type, hence the copies between array types.
    """
    count = statuses.size()
    if count == 0:
        return []
    jvm = spark.sparkContext._jvm
    array_type = jvm.java.lang.Class.forName("[Lorg.apache.hadoop.fs.FileStatus;")
    typed = jvm.java.util.Arrays.copyOf(statuses.toArray(), count, array_type)
    paths = jvm.org.apache.hadoop.fs.FileUtil.stat2Paths(typed)
    objects = spark.sparkContext._gateway.new_array(jvm.java.lang.Object, count)
    jvm.java.lang.System.arraycopy(paths, 0, objects, 0, count)
    joined = jvm.org.apache.hadoop.util.StringUtils.join(
        separator, jvm.java.util.Arrays.asList(objects)
    )
    strings = joined.split(separator)
    if len(strings) == count:
        return strings
    # A name holding the separator (no file system allows NUL): one call per file then.
    return [statuses.get(index).getPath().toString() for index in range(count)]


def _list_local_files(top: str) -> dict[str, str | None]:
    top = os.path.abspath(top)
    if os.path.isfile(top):
        return {"file:" + top: None}
    if not os.path.isdir(top):
        raise FileNotFoundError(top)
    found: dict[str, str | None] = {}
    folders = [(top, frozenset([_identity(top)]))]  # each with the folders above it
    while folders:
        folder, above = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():  # symbolic links to folders are followed, as Hadoop does,
                    identity = _identity(entry.path)
                    if identity not in above:  # but not round a cycle
                        folders.append((entry.path, above | {identity}))
                elif entry.is_file():
                    found["file:" + entry.path] = None
                elif entry.is_symlink():
                    found["file:" + entry.path] = "broken symbolic link: its target does not exist"
                else:
                    found["file:" + entry.path] = "not a regular file (a pipe, socket or device)"
    return found


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def probe(spark: SparkSession, uri: str) -> int:
    """Open the object and read its first byte through Hadoop, as an executor would; returns
    its length. Raises OSError with Hadoop's reason when that fails."""
    try:
        fs, path = _fs_and_path(spark, uri)
        length = fs.getFileStatus(path).getLen()
        stream = fs.open(path)
        try:
            stream.read()
        finally:
            stream.close()
    except Py4JJavaError as error:  # as py4j gives most Java exceptions
        java = error.java_exception
        raise OSError(f"{java.getClass().getSimpleName()}: {java.getMessage()}") from None
    except PySparkException as error:  # as PySpark converts some (IllegalArgumentException)
        raise OSError(str(error).splitlines()[0]) from None
    return length


def write_json(spark: SparkSession, uri: str, document: dict[str, Any]) -> None:
    write_bytes(spark, uri, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def read_json(spark: SparkSession, uri: str) -> dict[str, Any]:
    return json.loads(read_bytes(spark, uri))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def require_complete(spark: SparkSession, folder: str, marker: str, job: str) -> None:
    """Each job writes its marker last: a folder without it is what a failed run left."""
    if not exists(spark, join(folder, marker)):
        raise SystemExit(
            f"{job}: {folder} is incomplete (no {marker}, which the job that writes it adds "
            "last): re-run that job, or the night"
        )


def ship_to_workers(spark: SparkSession, *modules: ModuleType) -> None:
    """The workers import these modules (a pickled function refers to them by name): send each
    one the driver read from a plain file, as when `spark-submit spark_jobs/<job>.py` runs from a
    checkout. One read from the library archive on --py-files is on the workers' path already."""
    for module in modules:
        if module.__file__ and os.path.isfile(module.__file__):
            spark.sparkContext.addPyFile(module.__file__)
