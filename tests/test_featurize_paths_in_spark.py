"""How a path survives the trip through Spark's loader, with Hadoop itself as the reference."""

from __future__ import annotations

import pytest

from image_reading import literal_path, path_from_uri, read_paths, unglobbable
from test_featurize_accounting import ODD_NAMES

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_uri_of_spark_becomes_the_path_hadoop_shows(spark, name):
    """Hadoop itself is the reference: Path(string).toUri() and back."""
    jvm = spark.sparkContext._jvm
    for shown in (f"file:/in/Kiwi/{name}", f"s3://lake/in/Kiwi/{name}"):
        uri = jvm.org.apache.hadoop.fs.Path(shown).toUri().toString()
        assert path_from_uri(uri) == shown


def test_spark_reads_a_literal_path_as_exactly_that_file(spark, tmp_path):
    folder = tmp_path / "_hidden folder"
    folder.mkdir()
    for number, name in enumerate(ODD_NAMES):
        (folder / name).write_bytes(bytes([number]) * (number + 1))
    paths = [f"file:{folder / name}" for name in ODD_NAMES]
    frame, failed = read_paths(spark, paths)
    assert failed == {}
    rows = {row["path"]: row["content"] for row in frame.collect()}
    assert rows == {path: bytes([n]) * (n + 1) for n, path in enumerate(paths)}


def test_a_path_spark_must_glob_cannot_hold_a_colon(spark, tmp_path):
    """Why UNGLOBBABLE_ERROR exists: Hadoop's globber fails on it, escaped or not."""
    (tmp_path / "12:00 st*r.jpg").write_bytes(b"x")
    path = f"file:{tmp_path / '12:00 st*r.jpg'}"
    assert unglobbable(path)
    assert not unglobbable(f"file:{tmp_path / '12:00 star.jpg'}")
    assert not unglobbable("s3://lake/in/st*r.jpg")
    with pytest.raises(Exception, match="Relative path in absolute URI"):
        spark.read.format("binaryFile").load(literal_path(path)).collect()


def test_a_path_spark_refuses_is_reported_and_the_others_read(spark, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"a")
    good, gone = f"file:{tmp_path / 'a.jpg'}", f"file:{tmp_path / 'gone.jpg'}"
    frame, failed = read_paths(spark, [good, gone])
    assert [row["path"] for row in frame.select("path").collect()] == [good]
    assert list(failed) == [gone] and "cannot be read through Spark" in failed[gone]
