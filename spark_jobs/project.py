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
from datetime import date

from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession

from nights import MANIFEST, PARTITION, VECTOR_COLUMNS, list_nights, project, read_nights


@dataclass(frozen=True)
class Args:
    features: str
    since: str
    until: str
    model: str
    output: str


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True, help="root of featurize's nightly partitions")
    parser.add_argument("--since", required=True, help="the first night (YYYY-MM-DD)")
    parser.add_argument("--until", required=True, help="the last night (YYYY-MM-DD)")
    parser.add_argument("--model", required=True, help="a night's PCA model: runs/<date>/pca/model")
    parser.add_argument("--output", required=True, help="where the projected rows go (rewritten)")
    parsed = parser.parse_args(argv)
    for flag in ("since", "until"):
        try:
            date.fromisoformat(getattr(parsed, flag))
        except ValueError:
            parser.error(f"--{flag} {getattr(parsed, flag)!r} is not a date (YYYY-MM-DD)")
    if parsed.since > parsed.until:
        parser.error(f"--since {parsed.since} is after --until {parsed.until}")
    return Args(
        parsed.features.rstrip("/"),
        parsed.since,
        parsed.until,
        parsed.model.rstrip("/"),
        parsed.output.rstrip("/"),
    )


def main(argv: list[str] | None = None) -> None:
    import jobio
    from splits import assign_splits

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
    jobio.delete(spark, jobio.join(args.output, MANIFEST))
    rows.select(*VECTOR_COLUMNS, PARTITION).write.mode("overwrite").partitionBy(PARTITION).parquet(
        args.output
    )
    projected = spark.read.parquet(args.output).count()
    jobio.write_json(
        spark,
        jobio.join(args.output, MANIFEST),
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
