"""PCA fit time on 1280-d features, and how it grows with the number of rows.

    python -m benchmarks.pca [--rows 25000 50000 100000]

Runs the pca job's own fit (the covariance pass over the rows in Spark and its
eigendecomposition on the driver: the whole explained-variance curve), picks k at 95%, then builds
the job's Spark ML pipeline for that k (one more pass, to centre the projections), on rows
made by repeating the real features of the shared sample (the cost of a fit is the covariance
pass over the rows, whatever their values), in Spark local[2]. Prints seconds per fit and the
per-row cost, so the growth is visible.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import PRETRAINED_WEIGHTS, REPO, SAMPLE_DIR
from benchmarks.quality import run

sys.path.insert(0, str(REPO / "spark_jobs"))
import pca  # noqa: E402  (the job's own functions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    args = parser.parse_args(argv)

    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="bench-pca-") as scratch:
        features = Path(scratch, "features")
        run(
            "featurize",
            *("--input", str(SAMPLE_DIR), "--output", str(features)),
            *("--weights", str(PRETRAINED_WEIGHTS)),
        )
        real = spark.read.parquet(str(features))
        base_rows = real.count()
        print(
            "\nPCA fit time — 1280-d MobileNetV2 features, Spark local[2] "
            f"(from {base_rows} real rows)"
        )
        print(f"{'rows':>8} {'curve fit s':>12} {'final fit s':>12} {'k@95%':>6} {'µs/row':>8}")
        for rows in args.rows:
            copies = -(-rows // base_rows)
            data = (
                real.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
                .limit(rows)
                .withColumn("features_vector", array_to_vector("features"))
                .repartition(8)
                .cache()
            )
            data.count()
            started = time.perf_counter()
            components = pca.fit(data, 1280, standardize=False)
            curve = time.perf_counter() - started
            explained = components.explained_variance
            cumulative = [sum(explained[: i + 1]) for i in range(len(explained))]
            k = pca.choose_k(cumulative, 0.95)
            started = time.perf_counter()
            components.spark_pipeline(data, k)
            final = time.perf_counter() - started
            print(
                f"{rows:8d} {curve:12.1f} {final:12.1f} {k:6d} {1e6 * (curve + final) / rows:8.1f}"
            )
            data.unpersist()
    spark.stop()


if __name__ == "__main__":
    main()
