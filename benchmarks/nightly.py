"""The same new night over histories of 1x, 4x and 16x its size: does a night cost its photos?

    python -m benchmarks.nightly [--images DIR] [--weights FILE] [--new 120]
        [--scales 1 4 16] [--cores 2]

The new night is `--new` photos of the shared Fruits-360 sample (spread over its classes and
both splits). For each history size it runs the night as the DAG does, the jobs the DAG plans
(`spark_steps.pipeline_jobs`, so the same flags) with `spark-submit` in Spark `local[--cores]`,
every s3:// URI mapped to a folder standing in for the lake, each timed from the command's start
to its end (JVM start-up included: a night pays it too):

- featurize: the night's photos into its partition;
- pca: the nights' kept statistics merged, the night projected;
- classify: as the DAG plans it;
- export: what the DAG would copy to Azure (`fruits.export.night_sources`), copied to a local
  folder standing in for the container; its bytes.

The history is made cheaply: the night's own feature rows, copied (paths renamed) into one
partition per earlier night, as many nights as the scale; then the last of those nights is run
once through pca and classify, untimed, as the nights before would have (it keeps every night's
statistics). A first round at the smallest scale converts the weights and warms the caches;
it is printed, not compared. The goal: the night's total grows by at most 10% from 1x to 16x,
and the bytes exported do not grow (the files whose size changed are listed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import REPO, add_data_arguments
from fruits.config import Deployment, RunConfig
from fruits.export import night_sources
from fruits.local_platform import LOCAL_SPARK_OPTIONS
from fruits.spark_steps import SparkJob, pipeline_jobs

BUCKET = "bench-lake"
NEW_NIGHT = "2026-10-31"  # after every history night (2026-10-01 ...)
STAGES = ("featurize", "pca", "classify", "export")


def history_night(index: int) -> str:
    return f"2026-10-{index + 1:02d}"


def night_config(night: str, weights_sha256: str = "0" * 64) -> RunConfig:
    """The night as the DAG would run it, in a lake named BUCKET (featurize alone checks the
    weights against their sha256)."""
    variable = {
        "region": "eu-west-1",
        "lake_bucket": BUCKET,
        "weights_uri": f"s3://{BUCKET}/models/backbone.weights.h5",
        "weights_sha256": weights_sha256,
        "azure_container": "bench",
    }
    return RunConfig.build({"run_date": night, "platform": "local"}, variable, Deployment())


def local(job: SparkJob, lake: Path) -> SparkJob:
    """The job with each s3://BUCKET/<key> as <lake>/<key>."""

    def path(uri: str) -> str:
        return str(lake / uri[len(f"s3://{BUCKET}/") :]) if uri.startswith("s3://") else uri

    return SparkJob(
        job.name,
        {flag: path(uri) for flag, uri in job.inputs.items()},
        {flag: path(uri) for flag, uri in job.outputs.items()},
        job.options,
        {flag: path(uri) for flag, uri in job.caches.items()},
    )


def spark_submit(job: SparkJob, cores: int) -> float:
    """Run a job as the local platform does; its wall-clock seconds."""
    command = [str(Path(sys.executable).with_name("spark-submit")), "--master", f"local[{cores}]"]
    command += [*LOCAL_SPARK_OPTIONS, "--conf", "spark.ui.enabled=false"]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, str(REPO / "spark_jobs" / job.script), *job.arguments()],
        capture_output=True,
        text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{job.name} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def run_jobs(
    night: str, lake: Path, names: tuple[str, ...], cores: int, weights_sha256: str = "0" * 64
) -> dict[str, float]:
    jobs = {
        job.name: local(job, lake) for job in pipeline_jobs(night_config(night, weights_sha256))
    }
    return {name: spark_submit(jobs[name], cores) for name in names}


def export(night: str, lake: Path, container: Path) -> tuple[float, dict[str, int]]:
    """Copy what the DAG would export for the night; (seconds, bytes of each exported file)."""
    started, sizes = time.perf_counter(), {}
    for folder, prefix in night_sources(night_config(night)).prefixes.items():
        for file in sorted(p for p in (lake / prefix).rglob("*") if p.is_file()):
            if file.name.endswith(".crc"):  # Hadoop's local checksums: no object in S3
                continue
            target = container / folder / file.relative_to(lake / prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            sizes[without_write_id(f"{folder}/{file.relative_to(lake / prefix)}")] = (
                file.stat().st_size
            )
    return time.perf_counter() - started, sizes


def without_write_id(name: str) -> str:
    """A part file's name without the job's random UUID, to compare files across scales."""
    return re.sub(r"-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "", name)


def copy_night(template: Path, target: Path, night: str) -> int:
    """The template night's rows as another night's partition, paths renamed; the row count."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    target.mkdir(parents=True)
    rows = 0
    for part in sorted(template.glob("*.parquet")):
        table = pq.read_table(part)
        paths = pc.replace_substring(table["path"], f"/{NEW_NIGHT}/", f"/{night}/")
        table = table.set_column(table.schema.get_field_index("path"), "path", paths)
        pq.write_table(table, target / part.name)
        rows += table.num_rows
    shutil.copy(template / "_manifest.json", target / "_manifest.json")
    return rows


def land(sample: Path, target: Path, count: int) -> int:
    """Hard links to `count` of the sample's photos, spread evenly over its name order (so over
    its classes and both splits)."""
    photos = sorted(sample.rglob("*.jpg"))
    photos = photos[:: max(1, len(photos) // count)][:count]
    for photo in photos:
        link = target / photo.relative_to(sample)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.hardlink_to(photo)
        except OSError:  # another filesystem: copy
            shutil.copy(photo, link)
    return len(photos)


def one_scale(scale: int, scratch: Path, weights: Path, cores: int) -> dict:
    """The new night over `scale` earlier nights of its size: its stages' seconds and bytes."""
    lake = scratch / f"lake-{scale}x"
    config = night_config(NEW_NIGHT)
    (lake / "models").mkdir(parents=True)
    (lake / "models" / "backbone.weights.h5").symlink_to(weights)
    (lake / config.model_cache_prefix).symlink_to(scratch / "model-cache")  # kept across scales
    (lake / config.input_prefix_of_night).parent.mkdir(parents=True)
    (lake / config.input_prefix_of_night).symlink_to(scratch / "landing" / NEW_NIGHT)

    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    seconds = run_jobs(NEW_NIGHT, lake, ("featurize",), cores, sha256)
    template = lake / config.features_partition_prefix
    history = [history_night(i) for i in range(scale)]
    rows = sum(
        copy_night(template, lake / night_config(n).features_partition_prefix, n) for n in history
    )
    run_jobs(history[-1], lake, ("pca", "classify"), cores)  # the nights before (untimed)
    seconds.update(run_jobs(NEW_NIGHT, lake, ("pca", "classify"), cores))
    seconds["export"], exported = export(NEW_NIGHT, lake, scratch / f"container-{scale}x")
    metrics = json.loads((lake / config.run_prefix / "classify" / "metrics.json").read_text())
    pca = json.loads((lake / config.run_prefix / "pca" / "report.json").read_text())
    shutil.rmtree(lake)  # the next scale's disk
    result = {
        "scale": scale,
        "history_rows": rows,
        "seconds": seconds,
        "bytes": sum(exported.values()),
        "files": exported,
        "k": pca["k"],
        "accuracy": metrics.get("accuracy"),
    }
    print(f"  done: {row(result)}", flush=True)
    return result


def row(result: dict) -> str:
    cells = "".join(f"{result['seconds'][stage]:10.1f}" for stage in STAGES)
    accuracy = "" if result["accuracy"] is None else f"{result['accuracy']:.3f}"
    return (
        f"{result['scale']:>3}x {result['history_rows']:>7} rows{cells}"
        f"{sum(result['seconds'].values()):9.1f}{result['bytes']:>10,} B{result['k']:>5}"
        f"{accuracy:>10}"
    )


def bytes_that_changed(first: dict, last: dict) -> list[str]:
    """Which exported files differ in size between two scales, biggest change first."""
    names = sorted(set(first["files"]) | set(last["files"]))
    changes = [(last["files"].get(n, 0) - first["files"].get(n, 0), n) for n in names]
    return [f"{change:+9,} B  {name}" for change, name in sorted(changes, reverse=True) if change]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--new", type=int, default=120, help="photos in the new night")
    parser.add_argument(
        "--scales", type=int, nargs="+", default=[1, 4, 16], help="history sizes, in nights"
    )
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    if args.new < 10 or min(args.scales) < 1:
        parser.error("--new must be >= 10 and every --scales >= 1")

    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as scratch:
        scratch = Path(scratch)
        (scratch / "model-cache").mkdir()
        new = land(args.images, scratch / "landing" / NEW_NIGHT, args.new)
        print(f"new night {NEW_NIGHT}: {new} photos; histories of {args.scales} nights like it")
        # A first round, untimed in the comparison: it converts the weights into the model cache
        # and warms the JVM's and the OS's caches, which only the first night of a machine pays.
        warm_up = one_scale(min(args.scales), scratch, args.weights, args.cores)
        results = [one_scale(s, scratch, args.weights, args.cores) for s in args.scales]

    print(f"\nOne night of {new} photos over growing histories — Spark local[{args.cores}]")
    header = "".join(f"{stage:>10}" for stage in STAGES)
    print(f"{'history':>16}{header}{'total s':>9}{'exported':>12}{'k':>5}{'accuracy':>10}")
    results.sort(key=lambda r: r["scale"])
    print(f"{row(warm_up)}   (warm-up: converts the weights; not compared)")
    for r in results:
        print(row(r))
    first, last = results[0], results[-1]
    growth = sum(last["seconds"].values()) / sum(first["seconds"].values()) - 1
    print(
        f"from {first['scale']}x to {last['scale']}x: the night's total {growth:+.1%} "
        f"(goal: at most +10%), bytes exported {last['bytes'] - first['bytes']:+,} "
        "(goal: no growth)"
    )
    for line in bytes_that_changed(first, last):
        print(f"  {line}")


if __name__ == "__main__":
    main()
