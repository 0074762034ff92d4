"""Which rows train and which rows score: one rule for every job that needs it.

A photo under a `Training` or `Test` folder keeps that split (the Fruits-360 layout). A photo with
no such folder is assigned by a hash of its path, 80% Training and 20% Test: deterministic, so a
re-run, a backfill and every later night put it on the same side. PCA fits on the Training rows
only and the classifier is scored on the Test rows, so neither sees the rows it is judged on.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SPLITS = ("Training", "Test")
TRAINING_SHARE_PERCENT = 80


def hash_split(path: Column) -> Column:
    """'Training' for ~80% of paths, 'Test' for the rest, always the same for a given path."""
    bucket = F.pmod(F.xxhash64(path), F.lit(100))
    return F.when(bucket < TRAINING_SHARE_PERCENT, "Training").otherwise("Test")


def assign_splits(rows: DataFrame) -> DataFrame:
    """Keep the Training/Test folders' split; hash-split the rows that have none."""
    has_split = F.col("split").isin(*SPLITS)
    return rows.withColumn(
        "split", F.when(has_split, F.col("split")).otherwise(hash_split(F.col("path")))
    )


def split_rule(rows: DataFrame) -> str:
    """How the rows were split, for the reports: folders, hash, or both."""
    counts = rows.agg(
        F.sum(F.col("split").isin(*SPLITS).cast("int")).alias("folder"),
        F.count(F.lit(1)).alias("all"),
    ).first()
    hashed = f"hash of path ({TRAINING_SHARE_PERCENT}/{100 - TRAINING_SHARE_PERCENT})"
    if counts["folder"] == counts["all"]:
        return "folders"
    if counts["folder"] == 0:
        return hashed
    return f"folders, else {hashed}"
