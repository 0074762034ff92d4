"""A night's sufficient statistics, kept and merged exactly: no pass over the history.

Kept under `<moments root>/ingest_date=<date>/`, each computed once from the night's features:
- `training_moments.npz`: row count, mean and centred sum of outer products (float64) of the
  Training rows (`splits.py`), merged with Chan et al.'s pairwise update: the history's
  covariance, for PCA;
- `class_sums.npz`: rows and feature sum of every class in each split, which merge by adding:
  with the moments, the history's class means and within-class scatter, for the classifier.
"""

from __future__ import annotations

import functools
import io
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import jobio
import lake_layout
import splits
from lake_layout import TRAINING_MOMENTS, partition
from splits import SPLITS


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) with fixed timestamps: same arrays, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            payload = io.BytesIO()
            np.save(payload, np.asarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(entry, payload.getvalue())
    return buffer.getvalue()


@dataclass(frozen=True)
class Moments:
    """Row count, mean and centred sum of outer products (float64) of a set of rows."""

    n: int
    mean: np.ndarray  # (d,)
    m2: np.ndarray  # (d, d): sum over rows of (x - mean)(x - mean)^T

    @classmethod
    def empty(cls, d: int) -> Moments:
        return cls(0, np.zeros(d), np.zeros((d, d)))

    @classmethod
    def of(cls, rows: np.ndarray) -> Moments:
        rows = np.asarray(rows, np.float64)
        mean = rows.mean(axis=0)
        centred = rows - mean
        return cls(len(rows), mean, centred.T @ centred)

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets of rows (Chan, Golub & LeVeque's pairwise update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, m2)

    def covariance(self) -> np.ndarray:
        return self.m2 / max(self.n - 1, 1)

    def to_bytes(self) -> bytes:
        return npz_bytes({"n": np.int64(self.n), "mean": self.mean, "m2": self.m2})

    @classmethod
    def from_bytes(cls, data: bytes) -> Moments:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(int(arrays["n"]), arrays["mean"], arrays["m2"])


class Summary(Protocol):
    """Statistics of a set of rows that merge exactly: Moments, ClassSums."""

    def merge(self, other): ...

    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, data: bytes): ...


S = TypeVar("S", bound=Summary)
PARTS_SCHEMA = pa.schema([("partition", pa.int64()), ("summary", pa.binary())])
PARTS_DDL = "partition bigint, summary binary"


def feature_rows(batch: pa.RecordBatch) -> np.ndarray:
    """The batch's `features` list column as a (rows, d) array."""
    column = batch.column("features")
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)


def summarise_partition(
    batches: Iterator[pa.RecordBatch], summarise: Callable[[pa.RecordBatch], S]
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: one partition's batches summarised and merged in the order they come
    (deterministic), as one row (none if the partition is empty)."""
    from pyspark import TaskContext

    total = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        summary = summarise(batch)
        total = summary if total is None else total.merge(summary)
    if total is not None:
        partition_id = TaskContext.get().partitionId()
        yield pa.RecordBatch.from_arrays(
            [pa.array([partition_id], pa.int64()), pa.array([total.to_bytes()], pa.binary())],
            schema=PARTS_SCHEMA,
        )


def summarise(rows: DataFrame, summarise_batch: Callable[[pa.RecordBatch], S], empty: S) -> S:
    """The summary of `rows`, one pass, the partitions' parts merged in partition order (Spark's
    own tree aggregation would merge them in the order tasks finish): same inputs, same bits."""
    # summarise_partition runs on the workers: they import this module and what it imports
    jobio.ship_to_workers(rows.sparkSession, lake_layout, jobio, splits, sys.modules[__name__])
    parts = rows.mapInArrow(
        functools.partial(summarise_partition, summarise=summarise_batch), PARTS_DDL
    ).collect()
    total = empty
    for row in sorted(parts, key=lambda row: row["partition"]):
        total = total.merge(type(empty).from_bytes(bytes(row["summary"])))
    return total


def batch_moments(batch: pa.RecordBatch) -> Moments:
    return Moments.of(feature_rows(batch))


def training_moments(features: DataFrame, feature_size: int) -> Moments:
    """The moments of the Training rows, one pass."""
    training = splits.assign_splits(features).where(F.col("split") == "Training")
    return summarise(training.select("features"), batch_moments, Moments.empty(feature_size))


def history_moments(
    spark: SparkSession,
    features_root: str,
    moments_root: str | None,
    nights: list[str],
    tonight: str,
    feature_size: int,
) -> Moments:
    """Every night's Training moments merged in date order: an earlier night's as kept under
    `moments_root`, else computed from its features (and kept); `tonight`'s always computed, as
    its features were just written."""
    total = Moments.empty(feature_size)
    for night in nights:
        kept = (
            jobio.join(partition(moments_root, night), TRAINING_MOMENTS) if moments_root else None
        )
        if kept and night != tonight and jobio.exists(spark, kept):
            moments = Moments.from_bytes(jobio.read_bytes(spark, kept))
        else:
            moments = training_moments(
                spark.read.parquet(partition(features_root, night)), feature_size
            )
            print(f"pca: night {night}: {moments.n} Training rows summarised")
            if kept:
                jobio.write_bytes(spark, kept, moments.to_bytes())
        total = total.merge(moments)
    return total


# --------------------------------------------------------------------------------------------
# Per class and split: rows and feature sum
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassSums:
    """Rows and feature sum (float64) of every class in each split, of a set of rows."""

    labels: tuple[str, ...]  # sorted
    counts: np.ndarray  # (classes, splits), in splits.SPLITS order
    sums: np.ndarray  # (classes, splits, d)

    @classmethod
    def empty(cls, d: int) -> ClassSums:
        return cls((), np.zeros((0, len(SPLITS)), np.int64), np.zeros((0, len(SPLITS), d)))

    @classmethod
    def of(cls, labels: Sequence[str], splits: Sequence[str], rows: np.ndarray) -> ClassSums:
        rows = np.asarray(rows, np.float64)
        names = tuple(sorted(set(labels)))
        counts = np.zeros((len(names), len(SPLITS)), np.int64)
        sums = np.zeros((len(names), len(SPLITS), rows.shape[1]))
        labels, splits = np.asarray(labels), np.asarray(splits)
        for c, name in enumerate(names):
            for s, split in enumerate(SPLITS):
                chosen = (labels == name) & (splits == split)
                counts[c, s] = chosen.sum()
                sums[c, s] = rows[chosen].sum(axis=0)
        return cls(names, counts, sums)

    def merge(self, other: ClassSums) -> ClassSums:
        """The sums of both sets of rows, over the union of their labels."""
        labels = tuple(sorted(set(self.labels) | set(other.labels)))
        if labels == self.labels and not other.labels:
            return self
        d = self.sums.shape[2] if self.labels else other.sums.shape[2]
        counts = np.zeros((len(labels), len(SPLITS)), np.int64)
        sums = np.zeros((len(labels), len(SPLITS), d))
        for part in (self, other):
            at = [labels.index(label) for label in part.labels]
            counts[at] += part.counts
            sums[at] += part.sums
        return ClassSums(labels, counts, sums)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(counts, sums) of one split, one row per label."""
        s = SPLITS.index(name)
        return self.counts[:, s], self.sums[:, s]

    def rows_per_class(self) -> dict[str, int]:
        return {label: int(n) for label, n in zip(self.labels, self.counts.sum(axis=1))}

    def means(self) -> dict[str, np.ndarray]:
        """Every class's mean over both splits."""
        totals = self.sums.sum(axis=1)
        return {
            label: totals[c] / n
            for c, (label, n) in enumerate(zip(self.labels, self.counts.sum(axis=1)))
            if n
        }

    def to_bytes(self) -> bytes:
        return npz_bytes(
            {"labels": np.array(self.labels, dtype=str), "counts": self.counts, "sums": self.sums}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassSums:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            labels = tuple(str(label) for label in arrays["labels"])
            return cls(labels, arrays["counts"], arrays["sums"])


def batch_class_sums(batch: pa.RecordBatch) -> ClassSums:
    labels, split_names = batch.column("label").to_pylist(), batch.column("split").to_pylist()
    return ClassSums.of(labels, split_names, feature_rows(batch))


def class_sums(features: DataFrame, feature_size: int) -> ClassSums:
    """The ClassSums of rows with a split assigned, one pass."""
    rows = features.select("label", "split", "features")
    return summarise(rows, batch_class_sums, ClassSums.empty(feature_size))
