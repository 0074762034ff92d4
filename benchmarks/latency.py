"""Featurizing at object-store latency: every photo read as one GET that answers late.

    python -m benchmarks.latency [--images DIR] [--weights FILE] [--cores 2] [--rounds 3]
        [--latencies-ms 0 10 30 100] [--slots-per-core 4]     (or: make bench-latency)

On EMR each photo is its own S3 object, and the Spark task reading it waits for its first byte
(10-100 ms for a small object) before the next. Here the photos are served by a read-only FUSE
passthrough that adds the latency to every open() (benchmarks/slow_fs.py), and featurize.py runs
as the local platform runs it (spark-submit, its options), with a warm model cache, in Spark
local mode with `--slots-per-core` task slots per core (default: the platforms' own,
TASK_SLOTS_PER_VCPU; give several, `--slots-per-core 1 4`, to compare settings in the same
rounds: 1 is one task per core). Every setting and latency runs once in each of `--rounds`
interleaved rounds. Printed: the median images/s of each, its ratio to 0 ms of the same setting
(each round's and the medians'), the Python workers' peak RSS, and whether the features are the
same at every latency and agree with plain Keras. Each mount is unmounted after its run, also on
an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import add_data_arguments
from benchmarks.featurize import JobRun, load_features, median_run, min_cosine_to_keras, run_ours
from benchmarks.keras_reference import cosine_rows
from benchmarks.slow_fs import missing_requirements, mounted, signals_raise
from fruits.spark_sizing import TASK_SLOTS_PER_VCPU

LATENCIES_MS = (0, 10, 30, 100)


@dataclass(frozen=True)
class Setting:
    slots_per_core: int
    latency_ms: float

    @property
    def name(self) -> str:
        return f"{self.slots_per_core} slots/core, {self.latency_ms:g} ms"


def run_at(
    setting: Setting, images: Path, scratch: Path, weights: Path, cores: int
) -> tuple[JobRun, dict[str, np.ndarray]]:
    """featurize.py over `images` served `setting.latency_ms` late; its features by the photo's
    path relative to the image folder (each run has its own mount point)."""
    output = scratch / f"out-{setting.slots_per_core}-{setting.latency_ms:g}"
    master = f"local[{cores * setting.slots_per_core}]"
    with mounted(images, setting.latency_ms) as mountpoint:
        run = run_ours(mountpoint, output, weights, master, scratch / "cache", setting.name)
    prefix = f"file:{mountpoint}/"
    features = {path.removeprefix(prefix): v for path, v in load_features(output).items()}
    return run, features


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians shown)")
    parser.add_argument("--latencies-ms", type=float, nargs="+", default=LATENCIES_MS)
    parser.add_argument("--slots-per-core", type=int, nargs="+", default=[TASK_SLOTS_PER_VCPU])
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.rounds % 2 == 0:
        parser.error("--rounds must be odd, so that each median is one of the runs")
    if 0 not in args.latencies_ms:
        parser.error("--latencies-ms must include 0: the ratios are to it")
    missing = missing_requirements()
    if missing:
        raise SystemExit("benchmarks.latency needs: " + "; ".join(missing))

    settings = [Setting(s, ms) for s in args.slots_per_core for ms in args.latencies_ms]
    load_before = os.getloadavg()
    with signals_raise(), tempfile.TemporaryDirectory(prefix="bench-latency-") as scratch_dir:
        scratch = Path(scratch_dir)
        # Converts the weights once into the model cache: every timed run starts warm.
        run_ours(args.images, scratch / "cold", args.weights, "local[2]", scratch / "cache", "cold")
        rounds: list[dict[Setting, JobRun]] = []
        features: dict[Setting, dict[str, np.ndarray]] = {}
        for number in range(1, args.rounds + 1):
            rounds.append({})
            for setting in settings:
                run, features[setting] = run_at(
                    setting, args.images, scratch, args.weights, args.cores
                )
                rounds[-1][setting] = run
                print(f"round {number}: {setting.name}: {run.images_per_second:.1f} images/s")
        agreement = compare_features(features, args.images, args.weights)
    print_report(settings, rounds, agreement, args.cores, (load_before, os.getloadavg()))


def compare_features(
    features: dict[Setting, dict[str, np.ndarray]], images: Path, weights: Path
) -> dict[str, float]:
    """Every setting's features against the first one's (0 ms), and that one against Keras."""
    reference_setting, *others = features
    reference = features[reference_setting]
    paths = sorted(reference)
    distance = 0.0
    for setting in others:
        assert sorted(features[setting]) == paths, f"{setting.name} featurized other images"
        cosines = cosine_rows(
            np.stack([features[setting][p] for p in paths]), np.stack([reference[p] for p in paths])
        )
        distance = max(distance, float(1 - cosines.min()))
    min_cosine, sample = min_cosine_to_keras(reference, weights, lambda path: images / path)
    return {
        "images": len(paths),
        "max_distance": distance,
        "min_cosine_to_keras": min_cosine,
        "keras_sample": sample,
    }


def of_zero(runs: dict[Setting, JobRun], setting: Setting) -> float:
    """A setting's images/s as a share of the same slots' at 0 ms."""
    zero = runs[Setting(setting.slots_per_core, 0)]
    return runs[setting].images_per_second / zero.images_per_second


def print_report(
    settings: list[Setting],
    rounds: list[dict[Setting, JobRun]],
    agreement: dict,
    cores: int,
    loads: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    medians = {s: median_run([r[s] for r in rounds]) for s in settings}
    print(
        f"\nFeaturizing at object-store latency — {agreement['images']} real photos, each open() "
        f"late by the latency (FUSE), {cores} cores, median of {len(rounds)} interleaved rounds"
    )
    print(
        "load average (1, 5, 15 min) at the start "
        + ", ".join(f"{x:.1f}" for x in loads[0])
        + "; at the end "
        + ", ".join(f"{x:.1f}" for x in loads[1])
    )
    print(
        f"{'slots/core':>10} {'latency ms':>10} {'images/s':>9} {'of 0 ms':>8} "
        f"{'peak worker MB':>15} {'all workers MB':>15}"
    )
    for setting in settings:
        run = medians[setting]
        print(
            f"{setting.slots_per_core:>10} {setting.latency_ms:>10g} "
            f"{run.images_per_second:>9.1f} {of_zero(medians, setting):>8.0%} "
            f"{run.peak_worker_rss_mb:>15.0f} {run.peak_workers_total_mb:>15.0f}"
        )
    for number, runs in enumerate(rounds, 1):
        parts = [
            f"{s.name} {runs[s].images_per_second:.1f} ({of_zero(runs, s):.0%})" for s in settings
        ]
        print(f"round {number}: " + ", ".join(parts))
    print(
        f"features: max cosine distance to the first setting's: {agreement['max_distance']:.2e}; "
        f"min cosine to plain Keras ({agreement['keras_sample']} images): "
        f"{agreement['min_cosine_to_keras']:.6f}"
    )


if __name__ == "__main__":
    main()
