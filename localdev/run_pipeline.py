"""The main job: one night of the DAG end to end on the local platform, with `airflow dags test`.

    python -m localdev.run_pipeline [--images DIR] [--date YYYY-MM-DD] [--weights FILE]
                                    [--workdir DIR] [--fresh]

Starts a moto server (S3) and Azurite (Blob) on free loopback ports, restores the local lake
saved under `.local-runs/lake/` (the history of earlier nights; `--fresh` starts from an empty
lake and an empty Azurite), lands the photos of `--images` under `landing/<date>/` as the app
would, runs `airflow dags test fruits_pipeline <date>` on platform `local` (the same DAG, Spark
jobs and provider operators as on EMR; Spark in local mode), saves the lake back to disk, copies
the night's outputs to `.local-runs/<date>/results/`, prints a summary, and stops both emulators.
While the DAG runs, one line per task says when it starts and when it ends, with its duration.
Two runs with different dates make two nights: the second featurizes only its own photos and
refits PCA and the classifier over both.

Weights: `--weights`, else $FRUITS_WEIGHTS_FILE, else the shared pretrained backbone when it is
beside the repository, else Keras' ImageNet download. Without internet and without a file the
run stops and names those settings; the manifest records whichever weights ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from fruits import lake_layout
from fruits.export import LATEST
from fruits.lake import is_photo
from localdev import lake
from localdev.emulators import REPO, Endpoints, airflow_database, airflow_home_env, local_cloud
from localdev.progress import ProgressPrinter
from localdev.shared import PRETRAINED_WEIGHTS

BUNDLED_SAMPLE = REPO / "localdev" / "sample"
KERAS_IMAGENET = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
)


def find_weights(explicit: Path | None) -> Path:
    """A file asked for (`--weights`, $FRUITS_WEIGHTS_FILE) must exist: a typo stops the run
    rather than run other weights in its place."""
    for setting, asked in (
        ("--weights", explicit),
        ("FRUITS_WEIGHTS_FILE", os.environ.get("FRUITS_WEIGHTS_FILE")),
    ):
        if asked:
            if not Path(asked).is_file():
                raise SystemExit(
                    f"{setting} {asked}: no such file. Give the path of MobileNetV2 no-top "
                    "weights (.weights.h5, or Keras' legacy .h5); no other weights are used in "
                    "its place."
                )
            return Path(asked)
    if PRETRAINED_WEIGHTS.is_file():
        return PRETRAINED_WEIGHTS
    print("No weights file given: downloading Keras' ImageNet weights...", file=sys.stderr)
    try:
        import keras

        return Path(keras.utils.get_file(origin=KERAS_IMAGENET, cache_subdir="models"))
    except Exception as error:
        raise SystemExit(
            f"\nCannot download Keras' ImageNet weights ({type(error).__name__}). This machine "
            "seems offline: pass --weights FILE (or set FRUITS_WEIGHTS_FILE) to a MobileNetV2 "
            "no-top weights file. No other weights are used in its place."
        ) from None


def airflow_env(endpoints: Endpoints, home: Path, scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        **endpoints.airflow_env(),
        **airflow_home_env(home),
        "FRUITS_DEFAULT_PLATFORM": "local",
        "FRUITS_SCRATCH_DIR": str(scratch),
        "FRUITS_RETRY_DELAY_S": "5",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
    }


def run_dag(env: dict[str, str], run_date: str, log_file: Path) -> list[str]:
    """Run the night with `airflow dags test`, its full log in `log_file`, one line per task on
    the console as it starts and ends; return those lines."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    conf = json.dumps({"platform": "local", "run_date": run_date})
    print(f"Running `airflow dags test fruits_pipeline {run_date}` (full log: {log_file})")
    database = airflow_database(Path(env["AIRFLOW_HOME"]))
    progress = ProgressPrinter(database, "fruits_pipeline", lambda line: print(line, flush=True))
    progress.start()
    try:
        with log_file.open("w") as log:
            result = subprocess.run(
                [airflow, "dags", "test", "fruits_pipeline", run_date, "--conf", conf],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    finally:
        progress.stop()
    if result.returncode != 0:
        tail = log_file.read_text().splitlines()[-40:]
        raise SystemExit("The DAG run failed; last lines of its log:\n" + "\n".join(tail))
    return progress.lines


def download_results(s3, night: str, target: Path) -> None:
    """The night's outputs in one folder (features/, quarantine/, vectors/, pca/, classify/),
    replacing what an earlier run of the date left there."""
    shutil.rmtree(target, ignore_errors=True)
    run = f"{lake_layout.RUNS}/{night}"
    folders = {
        **{
            table: f"{table}/{lake_layout.PARTITION_KEY}={night}/"
            for table in (lake_layout.FEATURES, lake_layout.QUARANTINE, lake_layout.VECTORS)
        },
        lake_layout.PCA: f"{run}/{lake_layout.PCA}/",
        lake_layout.CLASSIFY: f"{run}/{lake_layout.CLASSIFY}/",
    }
    for folder, prefix in folders.items():
        for key in lake.list_keys(s3, prefix):
            path = target / folder / key[len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(lake.LAKE_BUCKET, key, str(path))


def published_blobs(endpoints: Endpoints, night: str) -> tuple[dict, list[str]]:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(
        endpoints.azurite_connection_string
    ).get_container_client(lake.CONTAINER)
    latest = json.loads(
        container.download_blob(f"fruits/{lake_layout.RUNS}/{night}/{LATEST}").readall()
    )
    names = [
        b.name
        for prefix in latest["folders"].values()
        for b in container.list_blobs(name_starts_with=prefix)
    ]
    return latest, names


def summary(night: str, results: Path, latest: dict, blobs: list[str]) -> str:
    manifest = json.loads((results / lake_layout.FEATURES / lake_layout.MANIFEST).read_text())
    report = json.loads((results / lake_layout.PCA / lake_layout.REPORT).read_text())
    metrics = json.loads((results / lake_layout.CLASSIFY / lake_layout.METRICS).read_text())
    counts, weights, rows = manifest["counts"], manifest["weights"], report["rows"]
    plots = sorted(results.rglob("*.png"))
    nights = report["nights"]
    return "\n".join(
        [
            "",
            f"Fruits! local night {night} — done",
            f"  new photos {counts['read']}: featurized {counts['featurized']}, "
            f"quarantined {counts['quarantined']}",
            f"  history: {len(nights)} night(s) ({nights[0]} .. {nights[-1]})",
            f"  PCA k = {report['k']} components, explained variance "
            f"{report['explained_variance_at_k']:.3f}; fitted on the history's {rows['fitted']} "
            f"Training rows; the night's {rows['projected']} rows projected",
            f"  classifier accuracy {metrics['accuracy']:.3f} on {metrics['counts']['Test']} "
            f"Test images (macro F1 {metrics['macro_f1']:.3f}, split: {metrics['split_rule']})",
            f"  weights {weights['source']} (sha256 {weights['sha256'][:12]}…)",
            f"  Azure (Azurite) {lake.CONTAINER}/{latest['prefix']}: {len(blobs)} blobs",
            f"  results copied to {results}",
            f"  plots: {', '.join(p.relative_to(results).as_posix() for p in plots) or 'none'}",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.run_pipeline",
        description=__doc__.split("\n\n")[0]
        + ' Through make: make run ARGS="--date 2026-11-25 --fresh".',
        epilog="Each night's full log: <workdir>/<date>/dag.log; its outputs: "
        "<workdir>/<date>/results/ (features/, quarantine/, pca/ with the plots, classify/).",
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=BUNDLED_SAMPLE,
        metavar="DIR",
        help="folder landed as the night's photos (any depth; label = parent folder, split = "
        "the nearest Training/Test folder); default: the bundled sample, localdev/sample/",
    )
    parser.add_argument(
        "--date",
        default=date.today().isoformat(),
        metavar="YYYY-MM-DD",
        help="the night to run, landed under landing/<date>/; default: today",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="MobileNetV2 no-top weights (.weights.h5 or Keras' legacy .h5); default: "
        "$FRUITS_WEIGHTS_FILE, else ../shared/models/ beside the repository, else Keras' "
        "ImageNet download",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / ".local-runs",
        metavar="DIR",
        help="where the lake, Azurite's data and each night's log and results are kept between "
        "runs; default: .local-runs/",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from an empty lake and an empty Azurite (forget every earlier night)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not args.images.is_dir():
        raise SystemExit(f"--images {args.images}: no such folder")
    weights = find_weights(args.weights)
    workdir = args.workdir.resolve()
    saved_lake = workdir / "lake"
    if args.fresh:
        for kept in (saved_lake, workdir / "azurite", workdir / "scratch"):
            shutil.rmtree(kept, ignore_errors=True)
    night_dir = workdir / args.date
    (night_dir / "airflow-home").mkdir(parents=True, exist_ok=True)

    with local_cloud(workdir) as endpoints:
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        history = lake.restore(s3, saved_lake)
        landed = lake.land_photos(s3, args.images, args.date)
        photos = sum(1 for key in lake.list_keys(s3, f"landing/{args.date}/") if is_photo(key))
        weights_uri, sha256 = lake.upload_weights(s3, weights)
        print(
            f"Local lake: {history} objects restored from {saved_lake}; {landed} files "
            f"({photos} photos) from {args.images} landed under landing/{args.date}/; "
            f"weights {weights.name}"
        )
        env = airflow_env(endpoints, night_dir / "airflow-home", workdir / "scratch")
        env |= lake.variable_env(lake.fruits_config(weights_uri, sha256))
        try:
            progress = run_dag(env, args.date, night_dir / "dag.log")
        finally:
            lake.save(s3, saved_lake)  # even a failed night leaves what it wrote, as a lake would
        if not photos:
            print(f"\nFruits! local night {args.date}: no new photos, nothing done or published")
            return {
                "results": None,
                "latest": None,
                "blobs": [],
                "lake": saved_lake,
                "progress": progress,
            }
        download_results(s3, args.date, night_dir / "results")
        latest, blobs = published_blobs(endpoints, args.date)
    print(summary(args.date, night_dir / "results", latest, blobs))
    return {
        "results": night_dir / "results",
        "latest": latest,
        "blobs": blobs,
        "lake": saved_lake,
        "progress": progress,
    }


if __name__ == "__main__":
    main()
