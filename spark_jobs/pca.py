"""Refit Spark ML PCA over the history of nights up to a date, and project every photo of it.

    spark-submit spark_jobs/pca.py --features ROOT --until YYYY-MM-DD --output URI
        [--moments ROOT] [--variance 0.95 | --k N] [--standardize | --no-standardize]

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
same bits.

Writes under --output:
- `vectors/`: Parquet `path, label, split, ingest_date, pca_features` (array<float>, k) of every
  row of the nights used;
- `model/`: a PipelineModel ([scaling ->] PCAModel -> centring by the Training mean), to project
  new images later (`pyspark.ml.functions.array_to_vector` on their `features`, into
  `features_vector`, first);
- `report.json`: k, how it was chosen, explained variance per component and cumulated, rows
  fitted and projected, the nights covered;
- `scree.png` and `projection.png` (the first two components of a bounded sample, by label).
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
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ml_models import java_model as _java_model
from moments import MOMENTS_FILE, Moments, training_moments

PLOT_SAMPLE_ROWS = 5000  # the projection plot never collects more than this
MANIFEST = "_manifest.json"  # featurize writes it last: the night's partition is complete
PARTITION = "ingest_date"


@dataclass(frozen=True)
class Args:
    features: str
    until: str
    output: str
    moments: str | None
    variance: float
    k: int | None
    standardize: bool


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True, help="root of featurize's nightly partitions")
    parser.add_argument("--until", required=True, help="the last night to use (YYYY-MM-DD)")
    parser.add_argument("--output", required=True)
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
        parsed.moments.rstrip("/") if parsed.moments else None,
        parsed.variance,
        parsed.k,
        parsed.standardize,
    )


# --------------------------------------------------------------------------------------------
# The nights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nights:
    complete: list[str]  # dates whose partition has its manifest, up to --until, in order
    incomplete: list[str]  # dates up to --until whose partition has none (a failed night)


def night_of(partition_uri: str) -> str | None:
    """'…/ingest_date=2026-11-25' -> '2026-11-25'; None for anything else."""
    name = partition_uri.rstrip("/").rsplit("/", 1)[-1]
    key, _, value = name.partition("=")
    return value if key == PARTITION else None


def nights_until(partitions: list[str], manifests: list[str], until: str) -> Nights:
    """Which nights up to `until` can be used, from the listings of partitions and manifests."""
    dated = {night_of(p) for p in partitions} - {None}
    done = {night_of(m.rsplit("/", 1)[0]) for m in manifests} - {None}
    wanted = sorted(d for d in dated if d <= until)
    return Nights(
        complete=[d for d in wanted if d in done], incomplete=[d for d in wanted if d not in done]
    )


def partition_uri(root: str, night: str) -> str:
    return f"{root}/{PARTITION}={night}"


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


def project(model: PipelineModel, features: DataFrame) -> DataFrame:
    return model.transform(features).select(
        "path",
        "label",
        "split",
        PARTITION,
        vector_to_array("pca_vector", "float32").alias("pca_features"),
    )


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def scree_plot(cumulative: list[float], variance: float | None, k: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    axes.plot(range(1, len(cumulative) + 1), cumulative, color="tab:blue")
    if variance is not None:
        axes.axhline(variance, color="tab:red", linestyle="--", label=f"target {variance:.0%}")
    axes.axvline(k, color="tab:green", linestyle=":", label=f"k = {k}")
    axes.set(xlabel="components", ylabel="cumulative explained variance", ylim=(0, 1.01))
    axes.set_title("PCA: cumulative explained variance")
    axes.legend(loc="lower right")
    return _png(figure)


def projection_plot(points: list) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({p["label"] for p in points})
    colours, markers = plt.get_cmap("tab20"), "o^sDv"  # 100 distinct colour/marker pairs
    figure, axes = plt.subplots(figsize=(12, 8))
    for index, label in enumerate(labels):
        xy = np.array([p["xy"] for p in points if p["label"] == label])
        style = {"color": colours(index % 20), "marker": markers[index // 20 % len(markers)]}
        axes.scatter(xy[:, 0], xy[:, 1], s=8, label=label, alpha=0.7, **style)
    axes.set(xlabel="component 1", ylabel="component 2")
    axes.set_title(f"First two components ({len(points)} images, {len(labels)} labels)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, ncol=2, markerscale=2)
    figure.tight_layout()
    return _png(figure)


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def plot_sample(vectors: DataFrame) -> list[dict]:
    """A deterministic, bounded sample of (label, first two components) for the plot."""
    rows = (
        vectors.orderBy(F.xxhash64("path"))
        .limit(PLOT_SAMPLE_ROWS)
        .select("label", F.slice("pca_features", 1, 2).alias("xy"))
        .collect()
    )
    return [{"label": r["label"], "xy": list(r["xy"]) + [0.0] * (2 - len(r["xy"]))} for r in rows]


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def find_nights(spark: SparkSession, args: Args) -> Nights:
    import jobio

    nights = nights_until(
        jobio.glob(spark, f"{args.features}/{PARTITION}=*"),
        jobio.glob(spark, f"{args.features}/{PARTITION}=*/{MANIFEST}"),
        args.until,
    )
    if args.until not in nights.complete:
        raise SystemExit(
            f"pca: the night {args.until} has no complete features partition under "
            f"{args.features} (no {MANIFEST}): run featurize for it first"
        )
    return nights


def read_nights(spark: SparkSession, root: str, nights: list[str]) -> DataFrame:
    """The rows of these nights, with their `ingest_date` (a string), as vectors for Spark ML."""
    rows = (
        spark.read.option("basePath", root)
        .option("mergeSchema", "false")
        .parquet(*(partition_uri(root, night) for night in nights))
    )
    missing = {"path", "label", "split", "features"} - set(rows.columns)
    if missing:
        raise SystemExit(f"pca: the features under {root} lack column(s) {sorted(missing)}")
    return rows.withColumn(PARTITION, F.col(PARTITION).cast("string")).withColumn(
        "features_vector", array_to_vector("features")
    )


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


def main(argv: list[str] | None = None) -> None:
    import jobio

    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-pca").getOrCreate()

    nights = find_nights(spark, args)
    rows = read_nights(spark, args.features, nights.complete)
    feature_size = len(rows.select("features").first()["features"])
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
    model.write().overwrite().save(jobio.join(args.output, "model"))
    project(model, rows).write.mode("overwrite").parquet(jobio.join(args.output, "vectors"))
    vectors = spark.read.parquet(jobio.join(args.output, "vectors"))

    target = None if args.k is not None else args.variance
    jobio.write_bytes(
        spark, jobio.join(args.output, "scree.png"), scree_plot(cumulative, target, k)
    )
    jobio.write_bytes(
        spark, jobio.join(args.output, "projection.png"), projection_plot(plot_sample(vectors))
    )
    report = {
        "job": "pca",
        "features": args.features,
        "until": args.until,
        "nights": nights.complete,
        "nights_incomplete": nights.incomplete,
        "rows": {"fitted": moments.n, "projected": vectors.count()},
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
        f"rows of {len(nights.complete)} night(s); {report['rows']['projected']} rows projected "
        f"-> {args.output} ({time.time() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
