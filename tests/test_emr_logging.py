"""The EMR cluster's log4j2 settings, applied to a real Spark: the per-photo INFO line goes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fruits import emr

pytestmark = pytest.mark.spark

READ_PHOTOS = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print(spark.read.format("binaryFile").load(sys.argv[1]).count())
"""


def spark_defaults_log4j2() -> str:
    """Spark's own log4j2 defaults (INFO), from its jars: what a cluster starts from."""
    import pyspark

    (jar,) = Path(pyspark.__file__).parent.glob("jars/spark-common-utils_*.jar")
    with zipfile.ZipFile(jar) as archive:
        return archive.read("org/apache/spark/log4j2-defaults.properties").decode()


def spark_log(tmp_path: Path, photos: Path, properties: dict[str, str]) -> str:
    config = tmp_path / f"log4j2-{len(properties)}.properties"
    extra = "".join(f"{key} = {value}\n" for key, value in properties.items())
    config.write_text(spark_defaults_log4j2() + "\n" + extra)
    script = tmp_path / "read_photos.py"
    script.write_text(READ_PHOTOS)
    spark_submit = Path(sys.executable).with_name("spark-submit")
    result = subprocess.run(
        [str(spark_submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false"]
        + ["--driver-java-options", f"-Dlog4j2.configurationFile=file:{config}"]
        + [str(script), str(photos)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert result.stdout.split()[-1] == "4"
    return result.stderr


def test_the_cluster_logs_no_line_per_photo_and_keeps_info(tmp_path, sample_dir):
    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sorted((sample_dir / "Test").rglob("*.jpg"))[:4]:
        (photos / image.name).write_bytes(image.read_bytes())

    at_info = spark_log(tmp_path, photos, {})
    assert at_info.count("FileScanRDD") == 4  # one line per photo without the setting

    quieted = spark_log(tmp_path, photos, emr.SPARK_LOG4J2)
    assert "FileScanRDD" not in quieted
    assert "Running Spark version" in quieted  # the rest of INFO is kept
