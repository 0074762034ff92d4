"""PCA fit time on 1280-d features, and how it grows with the number of rows.

    python -m benchmarks.pca [--rows 25000 50000 100000]

Runs the pca job's own fit: the pass that sums a night's Training rows into their statistics
(count, mean, centred sum of outer products; what a night pays for its own photos), then the
eigendecomposition of the covariance on the driver (the whole explained-variance curve), k at
95%, and the job's Spark ML pipeline for that k (built from the numbers, no pass). Rows are made
by repeating the real features of the shared sample (the cost of the pass does not depend on
their values), all taken as Training rows, in Spark local[2]. Prints seconds and the per-row
cost, so the growth is visible.
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
import ml_models  # noqa: E402  (the job's own functions)
import moments  # noqa: E402
import principal_components  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    args = parser.parse_args(argv)

    import numpy as np
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # the workers unpickle moments' functions
    for module in ("moments.py", "splits.py", "jobio.py", "lake_layout.py"):
        spark.sparkContext.addPyFile(str(REPO / "spark_jobs" / module))
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
        print(f"{'rows':>8} {'statistics s':>13} {'eigen+model s':>14} {'k@95%':>6} {'µs/row':>8}")
        for rows in args.rows:
            copies = -(-rows // base_rows)
            data = (
                real.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
                .limit(rows)
                .withColumn("split", F.lit("Training"))
                .repartition(8)
                .cache()
            )
            data.count()
            started = time.perf_counter()
            training = moments.training_moments(data, 1280)
            statistics = time.perf_counter() - started
            started = time.perf_counter()
            components = principal_components.principal_components(
                training, 1280, standardize=False
            )
            cumulative = np.cumsum(components.explained_variance).tolist()
            k = principal_components.choose_k(cumulative, 0.95)
            ml_models.spark_pipeline(spark, components, k)
            model = time.perf_counter() - started
            per_row = 1e6 * (statistics + model) / rows
            print(f"{rows:8d} {statistics:13.1f} {model:14.1f} {k:6d} {per_row:8.1f}")
            data.unpersist()
    spark.stop()


if __name__ == "__main__":
    main()
