"""A night of new photos against a full recompute of the whole history, in the same run.

    python -m benchmarks.nightly [--images DIR] [--weights FILE] [--history-nights 8]
        [--new 1000] [--cores 2]

The history is `--history-nights` nights of the shared Fruits-360 sample (4,560 real photos each:
36,480 by default), the new night `--new` photos of it. Both ways run the pipeline's own jobs with
`spark-submit` in Spark `local[--cores]`, as the local platform does, and are timed from the
command's start to its end (JVM start-up included: a night pays it too):

- full recompute (what every run did before nights): featurize every photo ever landed, fit PCA
  on all of them in one pass, refit the classifier;
- one night: featurize only the new photos into their partition, refit PCA from the nights' kept
  statistics (the new night's computed from its own rows), project and refit the classifier over
  the history.

The history's partitions are made by featurizing the sample once and copying its rows, with
their paths, into each night (identical photos give identical features; untimed), and their
statistics by one pca run (untimed: the earlier nights did that). The refit's growth with the
history (pca + classify of the same night over two history sizes) gives its cost per 100k rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import REPO, add_data_arguments
from fruits.local_platform import LOCAL_SPARK_OPTIONS

FIRST_NIGHT = 1  # nights are 2026-10-01, 2026-10-02, ...; the new one follows the history


def night(index: int) -> str:
    return f"2026-10-{index:02d}"


def spark_submit(job: str, *arguments: str, cores: int) -> float:
    """Run a job as the local platform does; its wall-clock seconds."""
    command = [str(Path(sys.executable).with_name("spark-submit")), "--master", f"local[{cores}]"]
    command += [*LOCAL_SPARK_OPTIONS, "--conf", "spark.ui.enabled=false"]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, str(REPO / "spark_jobs" / f"{job}.py"), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def pipeline(
    landing: Path,
    root: Path,
    until: str,
    out: Path,
    weights: Path,
    cores: int,
    moments: Path | None,
) -> dict[str, float]:
    """featurize -> pca -> classify of one night; seconds of each."""
    cache = ("--model-cache", str(out.parent / "model-cache"))
    seconds = {
        "featurize": spark_submit(
            "featurize",
            *("--input", str(landing), "--output", str(root / f"ingest_date={until}")),
            *("--weights", str(weights), *cache),
            cores=cores,
        )
    }
    seconds.update(refit(root, until, out, cores, moments))
    return seconds


def refit(root: Path, until: str, out: Path, cores: int, moments: Path | None) -> dict[str, float]:
    kept = ("--moments", str(moments)) if moments else ()
    pca = spark_submit(
        "pca",
        *("--features", str(root), "--until", until, "--output", str(out / "pca"), *kept),
        cores=cores,
    )
    classify = spark_submit(
        "classify",
        *("--input", str(out / "pca" / "vectors"), "--output", str(out / "classify")),
        cores=cores,
    )
    return {"pca": pca, "classify": classify}


def copy_night(spark, source: Path, target: Path, from_night: str, to_night: str) -> int:
    """The rows of one night as another night's partition, paths renamed; the row count."""
    from pyspark.sql import functions as F

    rows = spark.read.parquet(str(source)).withColumn(
        "path", F.regexp_replace("path", f"/{from_night}/", f"/{to_night}/")
    )
    rows.write.mode("overwrite").parquet(str(target))
    shutil.copy(source / "_manifest.json", target / "_manifest.json")
    return rows.count()


def land(sample: Path, target: Path, limit: int | None = None) -> int:
    """Hard links to the sample's photos (the first `limit`, in name order) under target/."""
    photos = sorted(p for p in sample.rglob("*.jpg"))[:limit]
    for photo in photos:
        link = target / photo.relative_to(sample)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.hardlink_to(photo)
        except OSError:  # another filesystem: copy
            shutil.copy(photo, link)
    return len(photos)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--history-nights", type=int, default=8)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    nights = [night(FIRST_NIGHT + i) for i in range(args.history_nights)]
    new_night = night(FIRST_NIGHT + args.history_nights)

    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as scratch:
        scratch = Path(scratch)
        history = sum(land(args.images, scratch / "landing" / n) for n in nights)
        new = land(args.images, scratch / "landing" / new_night, args.new)
        print(f"history: {args.history_nights} nights, {history} photos; new night: {new} photos")

        # Full recompute: every photo ever landed, as one input, one fit over all of them.
        full = pipeline(
            scratch / "landing",
            scratch / "full" / "features",
            new_night,
            scratch / "full",
            args.weights,
            args.cores,
            moments=None,
        )

        # The nights before: featurized once, rows copied per night, statistics kept (untimed).
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
        spark = spark.config("spark.driver.memory", "4g").getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        root, moments = scratch / "nights" / "features", scratch / "nights" / "moments"
        first = root / f"ingest_date={nights[0]}"
        spark_submit(
            "featurize",
            *("--input", str(scratch / "landing" / nights[0]), "--output", str(first)),
            *("--weights", str(args.weights), "--model-cache", str(scratch / "model-cache")),
            cores=args.cores,
        )
        rows = {nights[0]: spark.read.parquet(str(first)).count()}
        for n in nights[1:]:
            rows[n] = copy_night(spark, first, root / f"ingest_date={n}", nights[0], n)
        spark.stop()
        refit(root, nights[-1], scratch / "nights" / "before", args.cores, moments)

        # One night: its own photos, the history's statistics, a refit over the history.
        night_run = pipeline(
            scratch / "landing" / new_night,
            root,
            new_night,
            scratch / "nights" / "night",
            args.weights,
            args.cores,
            moments,
        )
        report = json.loads((scratch / "nights" / "night" / "pca" / "report.json").read_text())

        # The refit's growth: the same night over a smaller history (its first two nights).
        small = scratch / "small" / "features"
        for n in (*nights[:2], new_night):
            shutil.copytree(root / f"ingest_date={n}", small / f"ingest_date={n}")
        small_moments = scratch / "small" / "moments"
        for n in nights[:2]:
            shutil.copytree(moments / f"ingest_date={n}", small_moments / f"ingest_date={n}")
        small_refit = refit(
            small, new_night, scratch / "small" / "night", args.cores, small_moments
        )
        new_rows = report["rows"]["projected"] - sum(rows.values())
        small_rows = rows[nights[0]] + rows[nights[1]] + new_rows

    full_s, night_s = sum(full.values()), sum(night_run.values())
    big_rows = report["rows"]["projected"]
    slope = (sum(night_run[j] for j in ("pca", "classify")) - sum(small_refit.values())) / (
        big_rows - small_rows
    )
    print(f"\nNightly run vs full recompute — Spark local[{args.cores}], {big_rows} photos")
    print(f"{'':28} {'featurize':>10} {'pca':>8} {'classify':>9} {'total s':>9}")
    for name, run in (("full recompute (all photos)", full), (f"one night ({new} new)", night_run)):
        print(
            f"{name:28} {run['featurize']:10.1f} {run['pca']:8.1f} {run['classify']:9.1f} "
            f"{sum(run.values()):9.1f}"
        )
    print(f"a night costs {night_s / full_s:.1%} of a full recompute: {full_s / night_s:.1f}x less")
    print(
        f"refit (pca + classify) over the history: {sum(small_refit.values()):.1f} s at "
        f"{small_rows} rows, {night_run['pca'] + night_run['classify']:.1f} s at {big_rows} rows: "
        f"{slope * 100_000:.1f} s per 100k rows of history"
    )


if __name__ == "__main__":
    main()
