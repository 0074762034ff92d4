"""Refit Spark ML PCA over the history of nights up to a date; project that night's photos.

    spark-submit spark_jobs/pca.py --features ROOT --until YYYY-MM-DD --output URI
        --vectors PARTITION_URI [--moments ROOT] [--variance 0.95 | --k N]
        [--standardize | --no-standardize]

`--features` is the root of featurize's nightly partitions, `ROOT/ingest_date=<date>/`, each one
complete once its `_manifest.json` exists. The nights used are the complete ones up to `--until`;
an incomplete one (a night that failed) is left out and named in the report.

The fit uses the Training rows only (`splits.py`: folders, else a hash of the path), so the
classifier's Test rows never shape the components it is scored on. It needs no pass over the
history: each night's sufficient statistics (Training rows, their mean, the centred sum of their
outer products) are kept under `--moments ROOT/ingest_date=<date>/`, and merged exactly (Chan et
al.'s pairwise update) into the history's covariance. The night `--until` is always computed
from its features (they were just written); an earlier night's are reused, or computed once if
missing. Per night they are summed per partition in a fixed order, so the same inputs give the
same bits. Only the night `--until` is projected: a night costs its own photos, whatever the
history (`project.py` projects any range of nights in one model's basis, when asked).

Writes:
- `--vectors` (the night's partition of the vectors table, `<vectors root>/ingest_date=<date>`):
  Parquet `path, label, split, pca_features` (array<float>, k) of the night's rows, projected
  with this night's model (the `--output` below), then its `_manifest.json` (rows, k);
- under `--output`:
  - `model/`: a PipelineModel ([scaling ->] PCAModel -> centring by the Training mean), to
    project new images (`pyspark.ml.functions.array_to_vector` on their `features`, into
    `features_vector`, first; `nights.project` does both);
  - `basis.npz`: the same model as plain numbers, for numpy without Spark: `components` (d x k),
    `mean` (d), `scale` (d: 1, or 1/std with --standardize, 0 for a constant feature) and
    `explained_variance` (k); `pca_features = ((features - mean) * scale) @ components`;
  - `report.json`: k, how it was chosen, explained variance per component and cumulated, rows
    fitted and projected, the nights covered;
  - `scree.png` and `projection.png` (the night's photos on the first two components).
`report.json` is written last: its presence marks the output complete (the names:
`lake_layout.py`).

What does the work: `moments.py` (the nights' statistics), `principal_components.py` (the
eigendecomposition, k), `ml_models.py` (the Spark ML pipeline), `pca_plots.py` (the plots).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession

import jobio
from job_arguments import add_features_root, add_night, check_nights, folder
from lake_layout import (
    BASIS,
    FEATURES_COMPLETE,
    MODEL,
    PCA_COMPLETE,
    PROJECTION_PLOT,
    REPORT,
    SCREE_PLOT,
    VECTORS_COMPLETE,
)
from ml_models import spark_pipeline
from moments import Moments, history_moments
from nights import VECTOR_COLUMNS, Nights, list_nights, project, read_nights
from pca_plots import plot_sample, projection_plot, scree_plot
from principal_components import (
    PrincipalComponents,
    check_k,
    choose_k,
    plain_basis,
    principal_components,
)
from splits import assign_splits

DEFAULT_VARIANCE = 0.95


@dataclass(frozen=True)
class Args:
    features: str
    until: str
    output: str
    vectors: str
    moments: str | None
    variance: float
    k: int | None
    standardize: bool


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_features_root(parser)
    add_night(parser, "--until", "the last night to use")
    parser.add_argument("--output", required=True, help="the night's model, report and plots")
    parser.add_argument(
        "--vectors", required=True, help="the night's partition of the vectors table (rewritten)"
    )
    parser.add_argument("--moments", help="root keeping each night's statistics (optional)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--variance", type=float, default=DEFAULT_VARIANCE, help="target explained variance"
    )
    choice.add_argument("--k", type=int, help="a fixed number of components")
    parser.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="scale every feature to unit variance (default: centre only)",
    )
    parsed = parser.parse_args(argv)
    if not 0 < parsed.variance <= 1:
        parser.error("--variance must be in (0, 1]")
    if parsed.k is not None and parsed.k < 1:
        parser.error("--k must be >= 1")
    check_nights(parser, parsed, "--until")
    return Args(
        folder(parsed.features),
        parsed.until,
        folder(parsed.output),
        folder(parsed.vectors),
        folder(parsed.moments) if parsed.moments else None,
        parsed.variance,
        parsed.k,
        parsed.standardize,
    )


def find_nights(spark: SparkSession, args: Args) -> Nights:
    nights = list_nights(spark, args.features, args.until)
    if args.until not in nights.complete:
        raise SystemExit(
            f"pca: the night {args.until} has no complete features partition under "
            f"{args.features} (no {FEATURES_COMPLETE}): run featurize for it first"
        )
    return nights


@dataclass(frozen=True)
class Fit:
    """The history's PCA: its statistics, components, the k kept and the saveable model."""

    moments: Moments
    pcs: PrincipalComponents
    cumulative: list[float]
    k: int
    model: PipelineModel


def fit(spark: SparkSession, args: Args, nights: list[str], feature_size: int) -> Fit:
    """PCA of the Training rows of `nights`, from their kept statistics; k by --k or --variance."""
    moments = history_moments(spark, args.features, args.moments, nights, args.until, feature_size)
    if moments.n == 0:
        raise SystemExit(f"pca: no Training rows in the nights up to {args.until}")
    if args.k is not None:
        check_k(args.k, feature_size, moments.n)
    pcs = principal_components(moments, min(feature_size, moments.n), args.standardize)
    cumulative = np.cumsum(pcs.explained_variance).tolist()
    k = args.k if args.k is not None else choose_k(cumulative, args.variance)
    return Fit(moments, pcs, cumulative, k, spark_pipeline(spark, pcs, k))


def write_vectors(
    spark: SparkSession, args: Args, fitted: Fit, night_rows: DataFrame
) -> tuple[DataFrame, int]:
    """The night's rows projected into its partition of the vectors table, then its manifest;
    the rows as written, and how many."""
    projected = project(fitted.model, night_rows).select(*VECTOR_COLUMNS)  # the folder: the night
    projected.write.mode("overwrite").parquet(args.vectors)
    vectors = spark.read.parquet(args.vectors)
    rows = vectors.count()
    jobio.write_json(
        spark,
        jobio.join(args.vectors, VECTORS_COMPLETE),
        {"night": args.until, "rows": rows, "k": fitted.k, "projected_by": "pca"},
    )
    return vectors, rows


def write_plots(
    spark: SparkSession, args: Args, fitted: Fit, feature_size: int, vectors: DataFrame
) -> None:
    scree = scree_plot(
        fitted.pcs.explained_variance,
        variance_target(args),
        fitted.k,
        feature_size,
        fitted.moments.n,
    )
    jobio.write_bytes(spark, jobio.join(args.output, SCREE_PLOT), scree)
    projection = projection_plot(plot_sample(vectors), args.until)
    jobio.write_bytes(spark, jobio.join(args.output, PROJECTION_PLOT), projection)


def variance_target(args: Args) -> float | None:
    return None if args.k is not None else args.variance


def build_report(
    args: Args, nights: Nights, fitted: Fit, feature_size: int, projected_rows: int
) -> dict:
    k, cumulative = fitted.k, fitted.cumulative
    return {
        "job": "pca",
        "features": args.features,
        "until": args.until,
        "nights": nights.complete,
        "nights_incomplete": nights.incomplete,
        # Fitted: the history's Training rows (through their kept statistics); projected: the
        # night's rows, into its partition of the vectors table.
        "rows": {"fitted": fitted.moments.n, "projected": projected_rows},
        "vectors": args.vectors,
        "basis": BASIS,
        "fitted_on": "Training rows (splits.py)",
        "feature_size": feature_size,
        "standardize": args.standardize,
        "k": k,
        "k_chosen_by": "k" if args.k is not None else "variance",
        "variance_target": variance_target(args),
        "explained_variance_at_k": cumulative[k - 1],
        "explained_variance": fitted.pcs.explained_variance,
        "cumulative_explained_variance": cumulative,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-pca").getOrCreate()

    nights = find_nights(spark, args)
    night_rows = assign_splits(read_nights(spark, args.features, [args.until]))
    feature_size = len(night_rows.select("features").first()["features"])
    fitted = fit(spark, args, nights.complete, feature_size)

    jobio.delete(spark, jobio.join(args.output, PCA_COMPLETE))
    jobio.delete(spark, jobio.join(args.vectors, VECTORS_COMPLETE))
    fitted.model.write().overwrite().save(jobio.join(args.output, MODEL))
    basis = plain_basis(fitted.pcs, fitted.moments.mean, fitted.k)
    jobio.write_bytes(spark, jobio.join(args.output, BASIS), basis)
    vectors, projected_rows = write_vectors(spark, args, fitted, night_rows)
    write_plots(spark, args, fitted, feature_size, vectors)
    report = build_report(args, nights, fitted, feature_size, projected_rows)
    jobio.write_json(spark, jobio.join(args.output, REPORT), report)  # last: the output is complete
    print(
        f"pca: k={fitted.k} explains {fitted.cumulative[fitted.k - 1]:.4f} of the variance of "
        f"{fitted.moments.n} Training rows of {len(nights.complete)} night(s); the night's "
        f"{projected_rows} rows projected -> {args.vectors} ({time.time() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
