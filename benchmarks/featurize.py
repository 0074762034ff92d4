"""Featurization throughput: the seed notebook's pattern vs spark_jobs/featurize.py, same run.

    python -m benchmarks.featurize [--images DIR] [--copies 3] [--weights FILE] [--cores 2]
        [--rounds 3]

Both jobs featurize the same real photos (the shared Fruits-360 sample, 4,560 images, read
`--copies` times from as many folders) with the same pretrained weights in Spark local mode, each
in its own spark-submit with the local platform's options: the baseline one task per core, ours
with the platforms' task slots per core (fruits.local_platform.local_master). Ours runs cold once
(the weights converted to TFLite in the run), then warm (the converted model taken from the model
cache, as nightly runs do). For scale, the same decoding and the same TFLite model also run in
`--cores` plain Python processes without Spark: the most any Spark job doing this work could reach
on this machine. This machine's speed drifts by up to 25% within minutes, so the baseline, ours
warm and the model alone run side by side in `--rounds` interleaved rounds, and the medians are
compared.
Printed: images/s of each (from Spark session start to Parquet written, model loading included),
every round's own ratio, the ratio of the medians to the baseline, the peak memory of the Python
workers (sampled), and how close the outputs are, to each other and to a plain Keras reference
on a sample of the images.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq

from benchmarks import REPO, add_data_arguments
from benchmarks.keras_reference import cosine_rows, keras_features
from fruits.local_platform import LOCAL_SPARK_OPTIONS, local_master

REFERENCE_SAMPLE = 256


@dataclass
class JobRun:
    name: str
    seconds: float
    images: int
    peak_worker_rss_mb: float
    peak_workers_total_mb: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


class WorkerMemorySampler(threading.Thread):
    """Samples the RSS of the PySpark Python workers under a spark-submit process."""

    def __init__(self, root_pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root_pid, self.interval = root_pid, interval
        self.peak_one = self.peak_total = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                children = psutil.Process(self.root_pid).children(recursive=True)
                sizes = [p.memory_info().rss for p in children if _is_python_worker(p)]
            except psutil.Error:
                sizes = []
            if sizes:
                self.peak_one = max(self.peak_one, max(sizes))
                self.peak_total = max(self.peak_total, sum(sizes))
            self.done.wait(self.interval)


def _is_python_worker(process: psutil.Process) -> bool:
    try:
        return any(
            "pyspark.daemon" in part or "pyspark/daemon" in part for part in process.cmdline()
        )
    except psutil.Error:
        return False


def spark_submit(script: Path, args: list[str], master: str) -> tuple:
    command = [str(Path(sys.executable).with_name("spark-submit")), "--master", master]
    command += [*LOCAL_SPARK_OPTIONS, "--conf", "spark.ui.enabled=false"]  # as the DAG runs jobs
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    process = subprocess.Popen(
        [*command, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    sampler = WorkerMemorySampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{stderr[-3000:]}")
    return stdout, sampler


def run_baseline(images: Path, output: Path, weights: Path, cores: int) -> JobRun:
    stdout, sampler = spark_submit(
        REPO / "benchmarks" / "notebook_baseline.py",
        [str(images), str(output), str(weights)],
        f"local[{cores}]",  # the notebook's own setting: one task per core
    )
    seconds = float(stdout.split("BASELINE_SECONDS")[1].split()[0])
    count = pq.read_table(output, columns=["path"]).num_rows
    return JobRun("notebook pattern (baseline)", seconds, count, *_mb(sampler))


def run_ours(
    images: Path, output: Path, weights: Path, master: str, model_cache: Path, name: str
) -> JobRun:
    """featurize.py in `master` (the local platform's: local_master(cores))."""
    stdout, sampler = spark_submit(
        REPO / "spark_jobs" / "featurize.py",
        ["--input", str(images), "--output", str(output), "--weights", str(weights)]
        + ["--model-cache", str(model_cache)],
        master,
    )
    manifest = json.loads((output / "_manifest.json").read_text())
    return JobRun(name, job_seconds(stdout), manifest["counts"]["featurized"], *_mb(sampler))


def job_seconds(stdout: str) -> float:
    """The job's own time, from Spark session start to Parquet written, as featurize prints it
    (the manifest holds nothing of the clock)."""
    return float(re.search(r"^featurize: .* in ([0-9.]+) s$", stdout, re.MULTILINE).group(1))


def run_model_alone(images: Path, model_cache: Path, cores: int) -> JobRun:
    """Read, decode and featurize every image in `cores` processes with no Spark at all."""
    files = sorted(str(p) for p in images.rglob("*.jpg"))
    (model_file,) = model_cache.glob("*.tflite")  # what the warm run broadcast
    shards = [(files[i::cores], str(model_file)) for i in range(cores)]
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(_warm_up, range(cores))  # imports done before the clock starts, as in Spark
        started = time.perf_counter()
        featurized = sum(pool.map(_featurize_shard, shards))
        seconds = time.perf_counter() - started
    return JobRun("decode + model alone, no Spark", seconds, featurized, 0.0, 0.0)


def _warm_up(_: int) -> None:
    _worker_modules()


def _worker_modules():
    """spark_jobs/'s backbone, image_reading and featurize_worker, imported as the Spark
    workers import them."""
    if str(REPO / "spark_jobs") not in sys.path:
        sys.path.insert(0, str(REPO / "spark_jobs"))
    import backbone
    import featurize_worker
    import image_reading

    return backbone, image_reading, featurize_worker


def _featurize_shard(shard: tuple[list[str], str]) -> int:
    """The workers' own batch function over Arrow batches of the job's size, as Spark feeds it."""
    import pyarrow as pa

    backbone, image_reading, featurize_worker = _worker_modules()
    files, model_file = shard
    model = backbone.make_backbone(Path(model_file).read_bytes(), "tflite", 224)
    rows = image_reading.ARROW_BATCH_ROWS
    for start in range(0, len(files), rows):
        chunk = files[start : start + rows]
        contents = [Path(name).read_bytes() for name in chunk]
        batch = pa.RecordBatch.from_pydict({"path": chunk, "content": contents})
        featurize_worker.featurize_batch(batch, model, 224)
    return len(files)


def _mb(sampler: WorkerMemorySampler) -> tuple[float, float]:
    return sampler.peak_one / 2**20, sampler.peak_total / 2**20


def replicate(source: Path, target: Path, copies: int) -> Path:
    """`copies` copies of the sample: more real images, no invented ones."""
    for copy in range(copies):
        shutil.copytree(source, target / f"copy{copy}")
    return target


def local_file(path: str) -> Path:
    """The file of a `file:` path in the job's output."""
    return Path(path.removeprefix("file:"))


def load_features(output: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(output, columns=["path", "features"]).to_pydict()
    return {p: np.asarray(v, dtype=np.float32) for p, v in zip(table["path"], table["features"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--copies", type=int, default=3, help="read the images this many times")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians shown)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.rounds % 2 == 0:
        parser.error("--rounds must be odd, so that each median is one of the runs")

    with tempfile.TemporaryDirectory(prefix="bench-featurize-") as scratch:
        images = replicate(args.images, Path(scratch, "images"), args.copies)
        cache = Path(scratch, "model-cache")
        master = local_master(args.cores)
        cold = run_ours(images, Path(scratch, "cold"), args.weights, master, cache, "ours, cold")
        # The machine's speed drifts, so the jobs compared run side by side, several times.
        rounds = [
            (
                run_baseline(images, Path(scratch, "baseline"), args.weights, args.cores),
                run_ours(images, Path(scratch, "ours"), args.weights, master, cache, "ours, warm"),
                run_model_alone(images, cache, args.cores),
            )
            for _ in range(args.rounds)
        ]
        distances = compare_outputs(Path(scratch, "baseline"), Path(scratch, "ours"), args.weights)
    print_report(cold, rounds, distances, args.cores)


def median_run(runs: list[JobRun]) -> JobRun:
    """The run of median speed, with the highest memory seen in any of them."""
    middle = sorted(runs, key=lambda run: run.images_per_second)[len(runs) // 2]
    return replace(
        middle,
        peak_worker_rss_mb=max(run.peak_worker_rss_mb for run in runs),
        peak_workers_total_mb=max(run.peak_workers_total_mb for run in runs),
    )


def compare_outputs(baseline_output: Path, our_output: Path, weights: Path) -> dict[str, float]:
    """Cosine agreement of our features with the baseline's and with plain Keras (sampled)."""
    baseline, ours = load_features(baseline_output), load_features(our_output)
    paths = sorted(ours)
    assert sorted(baseline) == paths, "the two jobs featurized different images"
    versus_baseline = cosine_rows(
        np.stack([ours[p] for p in paths]), np.stack([baseline[p] for p in paths])
    )
    min_cosine, size = min_cosine_to_keras(ours, weights)
    return {
        "images": len(paths),
        "max_distance_to_baseline": float(1 - versus_baseline.min()),
        "min_cosine_to_keras": min_cosine,
        "keras_sample": size,
    }


def min_cosine_to_keras(
    features: dict[str, np.ndarray], weights: Path, photo: Callable[[str], Path] = local_file
) -> tuple[float, int]:
    """The lowest cosine of the job's features to plain Keras' over a seeded sample of the
    images (`photo` finds an output path's file), and the sample's size."""
    paths = sorted(features)
    size = min(REFERENCE_SAMPLE, len(paths))
    sample = [paths[i] for i in np.random.default_rng(0).choice(len(paths), size, replace=False)]
    reference = keras_features([photo(p) for p in sample], weights)
    return float(cosine_rows(np.stack([features[p] for p in sample]), reference).min()), size


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def print_report(
    cold: JobRun, rounds: list[tuple[JobRun, JobRun, JobRun]], distances: dict, cores: int
) -> None:
    compute_limit = 600 * cores / 2  # MobileNetV2 FP32 on this CPU (0.6 GFLOP/image), per issue
    baseline, warm, model_alone = (median_run(list(runs)) for runs in zip(*rounds))
    print(
        f"\nFeaturization benchmark — {distances['images']} real images, Spark local[{cores}] "
        f"(the baseline) and {local_master(cores)} (ours, as the local platform runs it)"
    )
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    print(f"median of {len(rounds)} interleaved rounds (ours, cold: once, first)")
    print(
        f"{'job':32} {'seconds':>8} {'images/s':>9} {'peak worker MB':>15} {'all workers MB':>15}"
    )
    for run in (baseline, cold, warm):
        print(
            f"{run.name:32} {run.seconds:8.1f} {run.images_per_second:9.1f} "
            f"{run.peak_worker_rss_mb:15.0f} {run.peak_workers_total_mb:15.0f}"
        )
    print(f"{model_alone.name:32} {model_alone.seconds:8.1f} {model_alone.images_per_second:9.1f}")
    for number, (round_baseline, round_warm, round_alone) in enumerate(rounds, 1):
        ratio = round_warm.images_per_second / round_baseline.images_per_second
        print(
            f"round {number}: baseline {round_baseline.images_per_second:.1f}, ours warm "
            f"{round_warm.images_per_second:.1f} ({ratio:.2f}x), "
            f"model alone {round_alone.images_per_second:.1f} images/s"
        )
    print(
        f"{model_alone.name}: {model_alone.images_per_second / baseline.images_per_second:.2f}x "
        "the baseline, the most a Spark job doing this work could reach on this machine"
    )
    for run in (cold, warm):
        print(
            f"{run.name}: {run.images_per_second / baseline.images_per_second:.2f}x the baseline, "
            f"{run.images_per_second / model_alone.images_per_second:.0%} of the model alone, "
            f"{run.images_per_second / compute_limit:.0%} of the FP32 compute limit"
        )
    print(f"max cosine distance ours vs baseline: {distances['max_distance_to_baseline']:.2e}")
    print(
        f"min cosine ours vs plain Keras ({distances['keras_sample']} images): "
        f"{distances['min_cosine_to_keras']:.6f}"
    )


if __name__ == "__main__":
    main()
