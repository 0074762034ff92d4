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
`report.json` is written last: its presence marks the output complete.
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from datetime import date

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCAModel, StandardScalerModel
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ml_models import java_model as _java_model
from moments import MOMENTS_FILE, Moments, npz_bytes, training_moments
from nights import (  # noqa: F401 (read_nights, project: the jobs' API, tests use them here)
    MANIFEST,
    VECTOR_COLUMNS,
    Nights,
    list_nights,
    partition_uri,
    project,
    read_nights,
)

PLOT_SAMPLE_ROWS = 5000  # the projection plot never collects more than this
BASIS_FILE = "basis.npz"


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
    parser.add_argument("--features", required=True, help="root of featurize's nightly partitions")
    parser.add_argument("--until", required=True, help="the last night to use (YYYY-MM-DD)")
    parser.add_argument("--output", required=True, help="the night's model, report and plots")
    parser.add_argument(
        "--vectors", required=True, help="the night's partition of the vectors table (rewritten)"
    )
    parser.add_argument("--moments", help="root keeping each night's statistics (optional)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--variance", type=float, default=0.95, help="target explained variance")
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
    try:
        date.fromisoformat(parsed.until)
    except ValueError:
        parser.error(f"--until {parsed.until!r} is not a date (YYYY-MM-DD)")
    return Args(
        parsed.features.rstrip("/"),
        parsed.until,
        parsed.output.rstrip("/"),
        parsed.vectors.rstrip("/"),
        parsed.moments.rstrip("/") if parsed.moments else None,
        parsed.variance,
        parsed.k,
        parsed.standardize,
    )


# --------------------------------------------------------------------------------------------
# Principal components, as a Spark ML pipeline
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrincipalComponents:
    std: np.ndarray | None  # each feature's standard deviation, when standardized
    mean: np.ndarray  # the Training rows' mean, in the space PCA sees (scaled or not)
    components: np.ndarray  # d x k_max, one component per column, by explained variance
    explained_variance: list[float]


def principal_components(moments: Moments, k_max: int, standardize: bool) -> PrincipalComponents:
    """Eigendecomposition of the Training rows' covariance (numpy's LAPACK, on the driver).

    Not `pyspark.ml.feature.PCA.fit`: on real MobileNetV2 features (rank-deficient, dead all-zero
    channels) its driver-side SVD returned wrong components that changed from run to run (the
    first explaining 4-6% of the variance instead of 26-31%). The result is still a Spark ML
    `PCAModel` (see `spark_pipeline`)."""
    covariance, mean, std = moments.covariance(), moments.mean, None
    if standardize:  # the correlation matrix: each feature divided by its standard deviation
        std = np.sqrt(np.clip(np.diag(covariance), 0, None))
        scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)  # constant: 0, as Spark
        covariance, mean = covariance * np.outer(scale, scale), mean * scale
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:k_max]
    eigenvalues = np.clip(eigenvalues, 0, None)
    return PrincipalComponents(
        std=std,
        mean=mean,
        components=eigenvectors[:, order],
        explained_variance=(eigenvalues[order] / eigenvalues.sum()).tolist(),
    )


def spark_pipeline(spark: SparkSession, pcs: PrincipalComponents, k: int) -> PipelineModel:
    """[scale ->] project on the first k components -> centre: a saveable PipelineModel, built
    from the numbers, no fitting pass. Centred by the Training rows' mean, like any PCA fitted
    on them: a photo projects the same whichever night it is projected in."""
    components = pcs.components[:, :k]
    pca = _java_model(
        spark,
        PCAModel,
        "org.apache.spark.ml.feature.PCAModel",
        "fruits_pca",
        DenseMatrix(*components.shape, components.ravel("F")),
        DenseVector(pcs.explained_variance[:k]),
    )
    input_column = "scaled" if pcs.std is not None else "features_vector"
    pca._set(k=k, inputCol=input_column, outputCol="projected")
    centre_of_training = components.T @ pcs.mean
    centre = _scaler(spark, "fruits_centre", "projected", "pca_vector", mean=centre_of_training)
    stages = [pca, centre]
    if pcs.std is not None:
        stages.insert(0, _scaler(spark, "fruits_scale", "features_vector", "scaled", std=pcs.std))
    for stage in stages:
        stage._transfer_params_to_java()
    return PipelineModel(stages=stages)


def _scaler(spark, uid, input_column, output_column, mean=None, std=None) -> StandardScalerModel:
    """A StandardScalerModel that either subtracts `mean` or divides by `std` (0 where a std is 0,
    as Spark's own scaler does)."""
    with_mean = mean is not None
    size = len(mean) if with_mean else len(std)
    model = _java_model(
        spark,
        StandardScalerModel,
        "org.apache.spark.ml.feature.StandardScalerModel",
        uid,
        DenseVector(np.ones(size) if std is None else std),
        DenseVector(mean if with_mean else np.zeros(size)),
    )
    model._set(
        inputCol=input_column, outputCol=output_column, withMean=with_mean, withStd=not with_mean
    )
    return model


def plain_basis(pcs: PrincipalComponents, training_mean: np.ndarray, k: int) -> bytes:
    """The model of `spark_pipeline` as numbers numpy reads without Spark (`basis.npz`):
    `pca_features = ((features - mean) * scale) @ components`, the same values the
    PipelineModel gives (its scaler divides by std, 0 for a constant feature)."""
    scale = np.ones_like(training_mean)
    if pcs.std is not None:
        scale = np.divide(1.0, pcs.std, out=np.zeros_like(pcs.std), where=pcs.std > 0)
    return npz_bytes(
        {
            "components": pcs.components[:, :k],
            "mean": training_mean,
            "scale": scale,
            "explained_variance": np.asarray(pcs.explained_variance[:k]),
        }
    )


def choose_k(cumulative: list[float], variance: float) -> int:
    """The fewest components whose cumulative explained variance reaches the target."""
    for k, reached in enumerate(cumulative, start=1):
        if reached >= variance - 1e-9:
            return k
    return len(cumulative)


def check_k(k: int, feature_size: int, rows: int) -> None:
    if k > feature_size:
        raise SystemExit(f"pca: k={k} exceeds the feature size ({feature_size})")
    if k > rows:
        raise SystemExit(f"pca: k={k} exceeds the number of Training rows ({rows})")


def pca_stage(model: PipelineModel) -> PCAModel:
    return next(stage for stage in model.stages if isinstance(stage, PCAModel))


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def scree_plot(
    explained: list[float], variance: float | None, k: int, feature_size: int, rows: int
) -> bytes:
    """Each component's share of the variance (bars) and the cumulated share (line), with k.
    The axis ends at the last component the Training rows can have: fewer rows than features
    leave the other directions with no variance, and the plot says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    components = np.arange(1, len(explained) + 1)
    figure, axes = plt.subplots(figsize=(9, 5.5))
    axes.bar(components, explained, width=1.0, color="tab:gray", label="each component")
    axes.plot(components, np.cumsum(explained), color="tab:blue", label="cumulated")
    if variance is not None:
        axes.axhline(variance, color="tab:red", linestyle="--", label=f"target {variance:.0%}")
    axes.axvline(k, color="tab:green", linestyle=":", label=f"k = {k} (kept)")
    axes.set(
        xlabel=f"principal component (1 to {len(explained)})",
        ylabel="share of the Training rows' variance",
        ylim=(0, 1.01),
        xlim=(0, len(explained) + 1),
    )
    axes.set_title(f"PCA: explained variance, k = {k} of {len(explained)} components")
    if len(explained) < feature_size:
        axes.text(
            0.98,
            0.35,
            f"Why the axis ends at {len(explained)}: {rows} Training rows have at most\n"
            f"{len(explained)} components (their covariance has rank < {rows}); the other\n"
            f"directions of the {feature_size} features explain no variance.",
            transform=axes.transAxes,
            ha="right",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "tab:gray", "alpha": 0.9},
        )
    axes.legend(loc="lower right")
    return _png(figure)


SPLIT_MARKERS = {"Training": "o", "Test": "^"}


def projection_plot(points: list[dict], night: str) -> bytes:
    """The night's photos on the first two components of the night's model: colour = label,
    marker = split (dots Training, triangles Test)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    labels = sorted({p["label"] for p in points})
    palette = plt.get_cmap("tab20" if len(labels) <= 20 else "turbo", max(len(labels), 1))
    colour = {label: palette(index) for index, label in enumerate(labels)}
    figure, axes = plt.subplots(figsize=(12, 8))
    for split, marker in SPLIT_MARKERS.items():
        mine = [p for p in points if p["split"] == split]
        if not mine:
            continue
        xy = np.array([p["xy"] for p in mine])
        axes.scatter(
            xy[:, 0],
            xy[:, 1],
            s=14 if split == "Training" else 30,
            c=[colour[p["label"]] for p in mine],
            marker=marker,
            alpha=0.75,
            edgecolors="black" if split == "Test" else "none",
            linewidths=0.5,
        )
    counts = {s: sum(p["split"] == s for p in points) for s in SPLIT_MARKERS}
    splits = [
        Line2D([], [], color="gray", marker=m, linestyle="", label=f"{s} ({counts[s]})")
        for s, m in SPLIT_MARKERS.items()
    ]
    by_label = [
        Line2D([], [], color=colour[label], marker="s", linestyle="", label=label)
        for label in labels
    ]
    legend = axes.legend(handles=splits, loc="upper right", title="split")
    axes.add_artist(legend)
    axes.legend(
        handles=by_label,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        ncol=2 if len(labels) > 30 else 1,
        title="label",
    )
    axes.set(xlabel="component 1", ylabel="component 2")
    axes.set_title(
        f"Night {night} only: its {len(points)} photos ({len(labels)} labels) on the first two "
        f"components of night {night}'s PCA model"
    )
    figure.tight_layout()
    return _png(figure)


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def plot_sample(vectors: DataFrame) -> list[dict]:
    """A deterministic, bounded sample of (label, split, first two components) for the plot."""
    rows = (
        vectors.orderBy(F.xxhash64("path"))
        .limit(PLOT_SAMPLE_ROWS)
        .select("label", "split", F.slice("pca_features", 1, 2).alias("xy"))
        .collect()
    )
    return [
        {"label": r["label"], "split": r["split"], "xy": list(r["xy"]) + [0.0] * (2 - len(r["xy"]))}
        for r in rows
    ]


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def history_moments(
    spark: SparkSession, args: Args, nights: list[str], feature_size: int
) -> Moments:
    """Every night's Training moments merged in date order; computed where not kept yet."""
    import jobio

    total = Moments.empty(feature_size)
    for night in nights:
        kept = None
        if args.moments:
            kept = jobio.join(partition_uri(args.moments, night), MOMENTS_FILE)
        if kept and night != args.until and jobio.exists(spark, kept):
            moments = Moments.from_bytes(jobio.read_bytes(spark, kept))
        else:
            features = spark.read.parquet(partition_uri(args.features, night))
            moments = training_moments(features, feature_size)
            print(f"pca: night {night}: {moments.n} Training rows summarised")
            if kept:
                jobio.write_bytes(spark, kept, moments.to_bytes())
        total = total.merge(moments)
    return total


def find_nights(spark: SparkSession, args: Args) -> Nights:
    nights = list_nights(spark, args.features, args.until)
    if args.until not in nights.complete:
        raise SystemExit(
            f"pca: the night {args.until} has no complete features partition under "
            f"{args.features} (no {MANIFEST}): run featurize for it first"
        )
    return nights


def main(argv: list[str] | None = None) -> None:
    import jobio
    from splits import assign_splits

    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-pca").getOrCreate()

    nights = find_nights(spark, args)
    night_rows = assign_splits(read_nights(spark, args.features, [args.until]))
    feature_size = len(night_rows.select("features").first()["features"])
    moments = history_moments(spark, args, nights.complete, feature_size)
    if moments.n == 0:
        raise SystemExit(f"pca: no Training rows in the nights up to {args.until}")
    if args.k is not None:
        check_k(args.k, feature_size, moments.n)

    pcs = principal_components(moments, min(feature_size, moments.n), args.standardize)
    cumulative = np.cumsum(pcs.explained_variance).tolist()
    k = args.k if args.k is not None else choose_k(cumulative, args.variance)
    model = spark_pipeline(spark, pcs, k)

    jobio.delete(spark, jobio.join(args.output, "report.json"))
    jobio.delete(spark, jobio.join(args.vectors, MANIFEST))
    model.write().overwrite().save(jobio.join(args.output, "model"))
    jobio.write_bytes(spark, jobio.join(args.output, BASIS_FILE), plain_basis(pcs, moments.mean, k))
    projected = project(model, night_rows).select(*VECTOR_COLUMNS)  # the folder says the night
    projected.write.mode("overwrite").parquet(args.vectors)
    vectors = spark.read.parquet(args.vectors)
    projected_rows = vectors.count()
    jobio.write_json(
        spark,
        jobio.join(args.vectors, MANIFEST),
        {"night": args.until, "rows": projected_rows, "k": k, "projected_by": "pca"},
    )

    target = None if args.k is not None else args.variance
    jobio.write_bytes(
        spark,
        jobio.join(args.output, "scree.png"),
        scree_plot(pcs.explained_variance, target, k, feature_size, moments.n),
    )
    jobio.write_bytes(
        spark,
        jobio.join(args.output, "projection.png"),
        projection_plot(plot_sample(vectors), args.until),
    )
    report = {
        "job": "pca",
        "features": args.features,
        "until": args.until,
        "nights": nights.complete,
        "nights_incomplete": nights.incomplete,
        # Fitted: the history's Training rows (through their kept statistics); projected: the
        # night's rows, into its partition of the vectors table.
        "rows": {"fitted": moments.n, "projected": projected_rows},
        "vectors": args.vectors,
        "basis": BASIS_FILE,
        "fitted_on": "Training rows (splits.py)",
        "feature_size": feature_size,
        "standardize": args.standardize,
        "k": k,
        "k_chosen_by": "k" if args.k is not None else "variance",
        "variance_target": target,
        "explained_variance_at_k": cumulative[k - 1],
        "explained_variance": pcs.explained_variance,
        "cumulative_explained_variance": cumulative,
    }
    jobio.write_json(spark, jobio.join(args.output, "report.json"), report)
    print(
        f"pca: k={k} explains {cumulative[k - 1]:.4f} of the variance of {moments.n} Training "
        f"rows of {len(nights.complete)} night(s); the night's {projected_rows} rows projected "
        f"-> {args.vectors} ({time.time() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
