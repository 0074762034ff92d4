"""Fit the nightly classifier from kept statistics and score the night's new Test photos.

    spark-submit spark_jobs/classify.py --features ROOT --until YYYY-MM-DD --pca URI \\
        --moments ROOT --output URI [--shrinkage 0.1]

The classifier is a shrinkage linear discriminant on the 1280 features (`discriminant.py`),
fitted exactly from each night's statistics kept under `--moments ROOT/ingest_date=<date>/`:
pca's Training moments and, per class and split, the rows and feature sum (`class_sums.npz`).
Nothing reads the history's rows: the night `--until` is summarised from its features; an
earlier night's statistics are reused, or computed once from its features if missing. The
nights are those pca used (`--pca`'s report.json, which marks pca's output complete).

The night's Test rows (`splits.py`) are scored by the model fitted before the night
(prequential) and by the new one (refit); the confusion counts are kept per night
(`evaluation.json`), so the accuracy over the history is their sum (`evaluation.py`).

Writes under --output:
- `model/`: a PipelineModel, `features_vector` (`array_to_vector` of `features`) ->
  `prediction`, `probability` -> `predicted_label`: a multinomial LogisticRegressionModel;
- `report.json` and `report.png`: what changed tonight (`night_report.py`);
- `metrics.json` (last: it marks the output complete): the refit accuracy on the night's Test
  rows as `accuracy` (with macro F1 and per class), and `evaluations`: prequential and refit,
  for the night and summed over the history to date.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import jobio
from discriminant import FEATURES_VECTOR, Discriminant, fit_discriminant, spark_model
from evaluation import NightEvaluation, confusion, history_totals
from job_arguments import add_features_root, add_night, check_nights, folder
from lake_layout import (
    CLASS_SUMS,
    CLASSIFY_COMPLETE,
    EVALUATION,
    FEATURES_COMPLETE,
    METRICS,
    MODEL,
    PCA_COMPLETE,
    REPORT,
    REPORT_PLOT,
    TRAINING_MOMENTS,
    partition,
)
from moments import ClassSums, Moments, class_sums, training_moments
from night_report import History, build_report, linear_part, report_png
from splits import assign_splits, split_rule

# Chosen on the shared sample, where it beat Ledoit-Wolf's estimate (docs/performance.md).
DEFAULT_SHRINKAGE = 0.1


@dataclass(frozen=True)
class Args:
    features: str
    until: str
    pca: str
    moments: str
    output: str
    shrinkage: float


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_features_root(parser)
    add_night(parser, "--until", "the night to classify")
    parser.add_argument("--pca", required=True, help="pca's output for that night")
    parser.add_argument("--moments", required=True, help="root keeping each night's statistics")
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--shrinkage",
        type=float,
        default=DEFAULT_SHRINKAGE,
        help="weight of the diagonal in the within-class covariance, in [0, 1]",
    )
    parsed = parser.parse_args(argv)
    if not 0 <= parsed.shrinkage <= 1:
        parser.error("--shrinkage must be in [0, 1]")
    check_nights(parser, parsed, "--until")
    return Args(
        features=folder(parsed.features),
        until=parsed.until,
        pca=folder(parsed.pca),
        moments=folder(parsed.moments),
        output=folder(parsed.output),
        shrinkage=parsed.shrinkage,
    )


@dataclass(frozen=True)
class Statistics:
    """What the classifier keeps of a night, or of nights merged: Training moments, class sums."""

    moments: Moments
    classes: ClassSums

    @classmethod
    def empty(cls, d: int) -> Statistics:
        return cls(Moments.empty(d), ClassSums.empty(d))

    def merge(self, other: Statistics) -> Statistics:
        return Statistics(self.moments.merge(other.moments), self.classes.merge(other.classes))

    def discriminant(self, shrinkage: float) -> Discriminant | None:
        """None while fewer than two classes have Training rows."""
        if (self.classes.split("Training")[0] > 0).sum() < 2:
            return None
        return fit_discriminant(self.moments, self.classes, shrinkage)


NightRows = Callable[[str], DataFrame]


def night_reader(spark: SparkSession, root: str) -> NightRows:
    """night -> its rows with their split and features_vector, read once and cached."""

    @functools.cache
    def rows_of(night: str) -> DataFrame:
        rows = spark.read.parquet(partition(root, night))
        missing = {"path", "label", "split", "features"} - set(rows.columns)
        if missing:
            raise SystemExit(f"classify: the features of {night} lack column(s) {sorted(missing)}")
        return assign_splits(rows).withColumn(FEATURES_VECTOR, array_to_vector("features")).cache()

    return rows_of


def night_statistics(
    spark: SparkSession, args: Args, night: str, rows_of: NightRows, d: int
) -> Statistics:
    """The night's kept statistics; what is missing (and, for --until, the class sums, as its
    features were just written) is computed from its features and kept."""
    kept = partition(args.moments, night)
    sums_uri, moments_uri = jobio.join(kept, CLASS_SUMS), jobio.join(kept, TRAINING_MOMENTS)
    if night != args.until and jobio.exists(spark, sums_uri):
        sums = ClassSums.from_bytes(jobio.read_bytes(spark, sums_uri))
    else:
        sums = class_sums(rows_of(night), d)
        jobio.write_bytes(spark, sums_uri, sums.to_bytes())
        print(f"classify: night {night}: {int(sums.counts.sum())} rows summarised per class")
    training_rows = int(sums.split("Training")[0].sum())
    moments = None
    if jobio.exists(spark, moments_uri):  # pca's, written by this night's pca run
        moments = Moments.from_bytes(jobio.read_bytes(spark, moments_uri))
    if moments is None or moments.n != training_rows:
        moments = training_moments(rows_of(night), d)
        jobio.write_bytes(spark, moments_uri, moments.to_bytes())
    if moments.n != training_rows:
        raise SystemExit(
            f"classify: night {night}: {moments.n} Training rows in the moments, {training_rows} "
            "in the class sums, both computed from its features: a bug, not a stale file"
        )
    return Statistics(moments, sums)


def score_night(
    spark: SparkSession,
    night: str,
    test_rows: DataFrame,
    before: Discriminant | None,
    after: Discriminant | None,
) -> NightEvaluation:
    def scored(model: Discriminant | None):
        return None if model is None else confusion(spark_model(spark, model), test_rows)

    return NightEvaluation(night, prequential=scored(before), refit=scored(after))


def kept_or_scored(
    spark: SparkSession,
    args: Args,
    night: str,
    before: Statistics,
    after: Statistics,
    rows_of: NightRows,
) -> NightEvaluation:
    """An earlier night's evaluation as kept, else scored once (from its own Test rows)."""
    kept = jobio.join(partition(args.moments, night), EVALUATION)
    if jobio.exists(spark, kept):
        return NightEvaluation.from_json(jobio.read_json(spark, kept))
    test_rows = rows_of(night).where(F.col("split") == "Test")
    evaluation = score_night(
        spark,
        night,
        test_rows,
        before.discriminant(args.shrinkage),
        after.discriminant(args.shrinkage),
    )
    jobio.write_json(spark, kept, evaluation.to_json())
    return evaluation


def evaluations_block(
    night: str, tonight: NightEvaluation, evaluations: list[NightEvaluation]
) -> dict[str, Any]:
    """Which model scored which rows, for each accuracy of metrics.json."""
    totals = history_totals(evaluations)
    prequential = tonight.prequential
    return {
        "refit_night": {
            "model": f"fitted on the nights up to {night}",
            "scored": f"the Test rows of {night}",
            **tonight.refit.summary(),
        },
        "prequential_night": None
        if prequential is None
        else {
            "model": f"fitted on the nights before {night} (the previous night's model)",
            "scored": f"the Test rows of {night}",
            **prequential.summary(),
        },
        "prequential_history": {
            "model": "for each night, the model fitted on the nights before it",
            "scored": f"the Test rows of every night up to {night}, each once",
            "nights": sum(1 for e in evaluations if e.prequential is not None),
            **totals["prequential"].summary(),
        },
        "refit_history": {
            "model": "for each night, that night's own model",
            "scored": f"the Test rows of every night up to {night}, each once",
            "nights": sum(1 for e in evaluations if e.refit is not None),
            **totals["refit"].summary(),
        },
    }


def pca_model_and_nights(spark: SparkSession, args: Args) -> tuple[PipelineModel, list[str], int]:
    jobio.require_complete(spark, args.pca, PCA_COMPLETE, job="classify")
    report = jobio.read_json(spark, jobio.join(args.pca, PCA_COMPLETE))
    nights = report["nights"]
    if not nights or nights[-1] != args.until:
        raise SystemExit(
            f"classify: {args.pca} is pca's output up to {report.get('until')}, not {args.until}"
        )
    model = PipelineModel.load(jobio.join(args.pca, MODEL))
    return model, nights, int(report["feature_size"])


def earlier_nights(
    spark: SparkSession, args: Args, nights: list[str], rows_of: NightRows, d: int
) -> tuple[Statistics, list[NightEvaluation]]:
    """The statistics of the nights before --until, merged in date order, and each one's
    evaluation (kept, or scored once)."""
    history, evaluations = Statistics.empty(d), []
    for night in nights:
        statistics = night_statistics(spark, args, night, rows_of, d)
        merged = history.merge(statistics)
        evaluations.append(kept_or_scored(spark, args, night, history, merged, rows_of))
        history = merged
    return history, evaluations


def build_metrics(
    spark: SparkSession,
    args: Args,
    nights: list[str],
    d: int,
    history: Statistics,
    model: Discriminant,
    evaluations: list[NightEvaluation],
) -> dict[str, Any]:
    """metrics.json: the refit accuracy on the night's Test rows, and every evaluation."""
    night, evaluation = args.until, evaluations[-1]
    refit = evaluation.refit
    return {
        "job": "classify",
        "features": args.features,
        "until": night,
        "nights": nights,
        "classifier": (
            f"linear discriminant on the {d} features (shrinkage {args.shrinkage}), as a "
            "multinomial LogisticRegressionModel"
        ),
        "fitted_from": "each night's kept class sums and Training moments, merged",
        "shrinkage": args.shrinkage,
        "split_rule": split_rule(spark.read.parquet(partition(args.features, night))),
        "counts": {"Training": history.moments.n, "Test": refit.rows},
        "classes": len(model.labels),
        "accuracy": refit.accuracy,
        "macro_f1": refit.macro_f1(),
        "per_class": {k: v for k, v in refit.per_class().items() if v["support"] > 0},
        "evaluations": evaluations_block(night, evaluation, evaluations),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-classify").getOrCreate()
    pca_model, nights, d = pca_model_and_nights(spark, args)
    rows_of = night_reader(spark, args.features)
    before, evaluations = earlier_nights(spark, args, nights[:-1], rows_of, d)

    night = args.until
    tonight = night_statistics(spark, args, night, rows_of, d)
    history = before.merge(tonight)
    model = history.discriminant(args.shrinkage)
    if model is None:
        raise SystemExit(
            f"classify: the Training rows up to {night} hold "
            f"{len(history.classes.labels)} class(es): a classifier needs 2 or more"
        )
    test_rows = rows_of(night).where(F.col("split") == "Test")
    evaluation = score_night(spark, night, test_rows, before.discriminant(args.shrinkage), model)
    kept = jobio.join(partition(args.moments, night), EVALUATION)
    jobio.write_json(spark, kept, evaluation.to_json())
    evaluations.append(evaluation)

    jobio.delete(spark, jobio.join(args.output, CLASSIFY_COMPLETE))
    spark_model(spark, model).write().overwrite().save(jobio.join(args.output, MODEL))
    features = jobio.join(partition(args.features, night), FEATURES_COMPLETE)
    photos = jobio.read_json(spark, features)["counts"]
    history_before = History(before.moments, before.classes)
    report = build_report(
        night, history_before, tonight.classes, photos, evaluations, linear_part(pca_model, d)
    )
    jobio.write_json(spark, jobio.join(args.output, REPORT), report)
    jobio.write_bytes(spark, jobio.join(args.output, REPORT_PLOT), report_png(report))
    metrics = build_metrics(spark, args, nights, d, history, model, evaluations)
    jobio.write_json(spark, jobio.join(args.output, METRICS), metrics)  # last: complete
    refit = evaluation.refit
    accuracy = "n/a" if refit.accuracy is None else f"{refit.accuracy:.4f}"
    print(
        f"classify: accuracy {accuracy} on {refit.rows} Test rows of {night} "
        f"({history.moments.n} Training rows of {len(nights)} night(s); "
        f"{time.time() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
