"""Project a range of nights in one basis: one night's PCA model over many nights' features.

    spark-submit --py-files <code>/dist/fruits_jobs.zip spark_jobs/project.py \
        --features ROOT --since YYYY-MM-DD --until YYYY-MM-DD --model URI --output URI

Each night's partition of the vectors table holds its photos projected with that night's own
model (`pca.py`): comparable within a night, not across nights. Run this when you need several
nights in one basis, for instance every night of November with the model of November 30:

    --features s3://<lake>/features --since 2026-11-01 --until 2026-11-30 \
    --model s3://<lake>/runs/2026-11-30/pca/model --output s3://<lake>/adhoc/november-in-11-30

It reads the complete features partitions from `--since` to `--until` (incomplete ones are named
and left out) and writes Parquet `path, label, split, pca_features` partitioned by `ingest_date`
under `--output`, then `_manifest.json` (nights, rows, model; written last). It runs on demand,
never in the nightly DAG: it costs the rows of the range.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession

import jobio
from job_arguments import add_features_root, add_night, check_nights, folder
from lake_layout import MODEL, PARTITION_KEY, PCA, PROJECT_COMPLETE, RUNS
from nights import VECTOR_COLUMNS, list_nights, project, read_nights
from splits import assign_splits


@dataclass(frozen=True)
class Args:
    features: str
    since: str
    until: str
    model: str
    output: str


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_features_root(parser)
    add_night(parser, "--since", "the first night")
    add_night(parser, "--until", "the last night")
    parser.add_argument(
        "--model", required=True, help=f"a night's PCA model: {RUNS}/<date>/{PCA}/{MODEL}"
    )
    parser.add_argument("--output", required=True, help="where the projected rows go (rewritten)")
    parsed = parser.parse_args(argv)
    check_nights(parser, parsed, "--since", "--until")
    if parsed.since > parsed.until:
        parser.error(f"--since {parsed.since} is after --until {parsed.until}")
    return Args(
        folder(parsed.features),
        parsed.since,
        parsed.until,
        folder(parsed.model),
        folder(parsed.output),
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-project").getOrCreate()
    nights = list_nights(spark, args.features, args.until, args.since)
    if not nights.complete:
        raise SystemExit(
            f"project: no complete features partition from {args.since} to {args.until} under "
            f"{args.features}"
        )
    model = PipelineModel.load(args.model)
    rows = project(model, assign_splits(read_nights(spark, args.features, nights.complete)))
    jobio.delete(spark, jobio.join(args.output, PROJECT_COMPLETE))
    rows = rows.select(*VECTOR_COLUMNS, PARTITION_KEY)
    rows.write.mode("overwrite").partitionBy(PARTITION_KEY).parquet(args.output)
    projected = spark.read.parquet(args.output).count()
    jobio.write_json(
        spark,
        jobio.join(args.output, PROJECT_COMPLETE),
        {
            "model": args.model,
            "nights": nights.complete,
            "nights_incomplete": nights.incomplete,
            "rows": projected,
        },
    )
    print(
        f"project: {projected} rows of {len(nights.complete)} night(s) projected with "
        f"{args.model} -> {args.output} ({time.time() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
