"""Reduce the image features with Spark ML PCA.

    spark-submit spark_jobs/pca.py --input FEATURES_URI --output URI
        [--variance 0.95 | --k N] [--standardize | --no-standardize]

Writes under --output:
- `vectors/`: Parquet `path, label, split, pca_features` (array<float>, k);
- `model/`: the fitted PipelineModel ([scaling ->] PCA -> centring), to project new images later
  (apply `pyspark.ml.functions.array_to_vector` to their `features` first, into `features_vector`);
- `report.json`: k, how it was chosen, explained variance per component and cumulated, rows;
- `scree.png` (cumulative explained variance, threshold and k marked) and `projection.png`
  (the first two components of a bounded sample, coloured by label).
`report.json` is written last: its presence marks the output complete.
"""

from __future__ import annotations

import argparse
import io
import time
import uuid
from dataclasses import dataclass

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCAModel, StandardScaler, StandardScalerModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.ml.stat import Correlation, Summarizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

PLOT_SAMPLE_ROWS = 5000  # the projection plot never collects more than this


@dataclass(frozen=True)
class Args:
    input: str
    output: str
    variance: float
    k: int | None
    standardize: bool


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="featurize's output (Parquet)")
    parser.add_argument("--output", required=True)
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
    return Args(
        parsed.input, parsed.output.rstrip("/"), parsed.variance, parsed.k, parsed.standardize
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
        raise SystemExit(f"pca: k={k} exceeds the number of rows ({rows})")


@dataclass(frozen=True)
class PrincipalComponents:
    scaler: StandardScalerModel | None
    input_column: str
    components: np.ndarray  # d x k_max, one component per column, by explained variance
    explained_variance: list[float]

    def spark_pipeline(self, features: DataFrame, k: int) -> PipelineModel:
        """[scale ->] project on the first k components -> centre: a saveable PipelineModel.

        A Spark ML `PCAModel` projects the raw vectors, so its outputs are centred by a last
        stage; new images go through the same three stages."""
        from pyspark.ml.common import _py2java

        context = features.sparkSession.sparkContext
        components = self.components[:, :k]
        java_model = context._jvm.org.apache.spark.ml.feature.PCAModel(
            f"pca_{uuid.uuid4().hex[:12]}",
            _py2java(context, DenseMatrix(*components.shape, components.ravel("F"))),
            _py2java(context, DenseVector(self.explained_variance[:k])),
        )
        pca_model = PCAModel(java_model)
        pca_model._set(k=k, inputCol=self.input_column, outputCol="projected")
        pca_model._transfer_params_to_java()
        projecting = [*([self.scaler] if self.scaler else []), pca_model]
        centre = StandardScaler(
            inputCol="projected", outputCol="pca_vector", withMean=True, withStd=False
        ).fit(PipelineModel(stages=projecting).transform(features))
        return PipelineModel(stages=[*projecting, centre])


def fit(features: DataFrame, k_max: int, standardize: bool) -> PrincipalComponents:
    """Every principal component up to k_max: two passes over the data (standard deviations,
    then correlations; one more first with --standardize, to fit the scaler).

    Spark computes the covariance matrix across the cluster (`Correlation` and `Summarizer`: no
    rows are collected); only that d x d matrix reaches the driver, where numpy's LAPACK
    diagonalises it. Not `PCA.fit` itself: on real MobileNetV2 features (rank-deficient, with dead
    all-zero channels) its driver-side SVD returned wrong components, differing from run to run
    (the first explaining 4-6% of the variance instead of 26-31%; tests/test_featurize_job.py
    compares ours with numpy). The result is still a Spark ML `PCAModel` (see `spark_pipeline`).
    """
    scaler = None
    column = "features_vector"
    if standardize:  # each feature divided by its standard deviation (centring comes later)
        scaler = StandardScaler(inputCol=column, outputCol="scaled", withMean=False, withStd=True)
        scaler = scaler.fit(features)
        features, column = scaler.transform(features), "scaled"
    std = features.select(Summarizer.std(F.col(column)).alias("std")).first()["std"].toArray()
    correlation = Correlation.corr(features, column).first()[0].toArray()
    covariance = np.nan_to_num(correlation) * np.outer(std, std)  # constant features: 0, not NaN
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:k_max]
    eigenvalues = np.clip(eigenvalues, 0, None)
    return PrincipalComponents(
        scaler=scaler,
        input_column=column,
        components=eigenvectors[:, order],
        explained_variance=(eigenvalues[order] / eigenvalues.sum()).tolist(),
    )


def pca_stage(model: PipelineModel) -> PCAModel:
    return next(stage for stage in model.stages if isinstance(stage, PCAModel))


def load_features(spark: SparkSession, uri: str) -> DataFrame:
    features = spark.read.parquet(uri)
    missing = {"path", "label", "split", "features"} - set(features.columns)
    if missing:
        raise SystemExit(f"pca: {uri} lacks column(s) {sorted(missing)}")
    return features.withColumn("features_vector", array_to_vector("features"))


def project(model: PipelineModel, features: DataFrame) -> DataFrame:
    return model.transform(features).select(
        "path", "label", "split", vector_to_array("pca_vector", "float32").alias("pca_features")
    )


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


def main(argv: list[str] | None = None) -> None:
    import jobio

    args = parse_args(argv)
    spark = SparkSession.builder.appName("fruits-pca").getOrCreate()
    started = time.time()

    features = load_features(spark, args.input).cache()
    rows = features.count()
    if rows == 0:
        raise SystemExit(f"pca: {args.input} holds no rows")
    feature_size = len(features.select("features").first()["features"])
    if args.k is not None:
        check_k(args.k, feature_size, rows)

    components = fit(features, min(feature_size, rows), args.standardize)
    explained = components.explained_variance
    cumulative = np.cumsum(explained).tolist()
    k = args.k if args.k is not None else choose_k(cumulative, args.variance)
    model = components.spark_pipeline(features, k)

    jobio.delete(spark, jobio.join(args.output, "report.json"))
    model.write().overwrite().save(jobio.join(args.output, "model"))
    vectors = project(model, features)
    vectors.write.mode("overwrite").parquet(jobio.join(args.output, "vectors"))
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
        "input": args.input,
        "rows": rows,
        "feature_size": feature_size,
        "standardize": args.standardize,
        "k": k,
        "k_chosen_by": "k" if args.k is not None else "variance",
        "variance_target": target,
        "explained_variance_at_k": cumulative[k - 1],
        "explained_variance": explained,
        "cumulative_explained_variance": cumulative,
        "duration_s": round(time.time() - started, 3),
    }
    jobio.write_json(spark, jobio.join(args.output, "report.json"), report)
    print(f"pca: k={k} explains {cumulative[k - 1]:.4f} of the variance -> {args.output}")


if __name__ == "__main__":
    main()
