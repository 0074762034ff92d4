"""The lake's nightly partitions, as every job reads them (their names: `lake_layout.py`).

A partition is complete once its manifest exists (its writer puts it there last): featurize's
features, pca's vectors. A job lists the complete nights of a root in one listing, reads the
ones it needs, and a PCA model projects rows into the layout of the vectors table.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import jobio
from lake_layout import FEATURES_COMPLETE, PARTITION_KEY, night_of, partition, partition_glob

# The vectors table's columns (its `ingest_date` is the partition folder's, not a column of the
# files: a reader of the table's root gets it from the folder names).
VECTOR_COLUMNS = ("path", "label", "split", "pca_features")


@dataclass(frozen=True)
class Nights:
    complete: list[str]  # dates whose partition has its manifest, in the range, in order
    incomplete: list[str]  # dates in the range whose partition has none (a failed night)


def nights_between(
    partitions: list[str], manifests: list[str], until: str, since: str = ""
) -> Nights:
    """Which nights from `since` to `until` (both included) can be used, from the listings of
    partitions and manifests."""
    dated = {night_of(p) for p in partitions} - {None}
    done = {night_of(m.rsplit("/", 1)[0]) for m in manifests} - {None}
    wanted = sorted(d for d in dated if since <= d <= until)
    return Nights(
        complete=[d for d in wanted if d in done], incomplete=[d for d in wanted if d not in done]
    )


def list_nights(spark: SparkSession, root: str, until: str, since: str = "") -> Nights:
    """The complete nights of a features root in a date range, in two listings of the root (not
    one per night)."""
    return nights_between(
        jobio.glob(spark, partition_glob(root)),
        jobio.glob(spark, jobio.join(partition_glob(root), FEATURES_COMPLETE)),
        until,
        since,
    )


def read_nights(spark: SparkSession, root: str, nights: list[str]) -> DataFrame:
    """The rows of these nights, with their `ingest_date` (a string), as vectors for Spark ML."""
    rows = (
        spark.read.option("basePath", root)
        .option("mergeSchema", "false")
        .parquet(*(partition(root, night) for night in nights))
    )
    missing = {"path", "label", "split", "features"} - set(rows.columns)
    if missing:
        raise SystemExit(f"the features under {root} lack column(s) {sorted(missing)}")
    return rows.withColumn(PARTITION_KEY, F.col(PARTITION_KEY).cast("string")).withColumn(
        "features_vector", array_to_vector("features")
    )


def project(model: PipelineModel, features: DataFrame) -> DataFrame:
    """Rows of `read_nights` through a PCA model (pca.py's `model/`), with their night."""
    return model.transform(features).select(
        "path",
        "label",
        "split",
        PARTITION_KEY,
        vector_to_array("pca_vector", "float32").alias("pca_features"),
    )
