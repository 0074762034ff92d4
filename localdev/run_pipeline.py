"""The main job: the DAG end to end on the local platform, with `airflow dags test`.

    python -m localdev.run_pipeline [--images DIR] [--weights FILE] [--date YYYY-MM-DD]

Starts a moto server (S3) and Azurite (Blob) on free loopback ports, seeds the lake with the
photos and the weights, runs `airflow dags test fruits_pipeline` on platform `local` (the same
DAG, Spark jobs and provider operators as on EMR; Spark in local mode), copies the run's outputs
to `.local-runs/<date>/results/`, prints a summary, and stops both emulators.

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

from localdev import lake
from localdev.emulators import REPO, Endpoints, airflow_home_env, local_cloud

BUNDLED_SAMPLE = REPO / "localdev" / "sample"
SHARED_WEIGHTS = REPO.parent / "shared" / "models" / "mobilenet_v2_1.0_pretrained_no_top.weights.h5"
KERAS_IMAGENET = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
)


def find_weights(explicit: Path | None) -> Path:
    for candidate in (explicit, os.environ.get("FRUITS_WEIGHTS_FILE"), SHARED_WEIGHTS):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if explicit:
        raise SystemExit(f"--weights {explicit}: no such file")
    print("No weights file given: downloading Keras' ImageNet weights...", file=sys.stderr)
    try:
        import keras

        return Path(keras.utils.get_file(origin=KERAS_IMAGENET, cache_subdir="models"))
    except Exception as error:
        raise SystemExit(
            f"\nCannot download Keras' ImageNet weights ({type(error).__name__}). This machine "
            "seems offline: pass --weights FILE (or set FRUITS_WEIGHTS_FILE) to a MobileNetV2 "
            "no-top .weights.h5 file. No other weights are used in its place."
        ) from None


def airflow_env(endpoints: Endpoints, home: Path, config: dict) -> dict[str, str]:
    return {
        **os.environ,
        **endpoints.airflow_env(),
        **lake.variable_env(config),
        **airflow_home_env(home),
        "FRUITS_DEFAULT_PLATFORM": "local",
        "FRUITS_SCRATCH_DIR": str(home.parent / "scratch"),
        "FRUITS_RETRY_DELAY_S": "5",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
    }


def run_dag(env: dict[str, str], run_date: str, log_file: Path) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    conf = json.dumps({"platform": "local", "run_date": run_date})
    print(f"Running `airflow dags test fruits_pipeline {run_date}` (log: {log_file})")
    with log_file.open("w") as log:
        result = subprocess.run(
            [airflow, "dags", "test", "fruits_pipeline", run_date, "--conf", conf],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        tail = log_file.read_text().splitlines()[-40:]
        raise SystemExit("The DAG run failed; last lines of its log:\n" + "\n".join(tail))


def download_results(s3, run_date: str, target: Path) -> None:
    """The run's outputs, replacing what an earlier run of the date left in the folder."""
    shutil.rmtree(target, ignore_errors=True)
    prefix = f"runs/{run_date}/"
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=lake.LAKE_BUCKET, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            path = target / item["Key"][len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(lake.LAKE_BUCKET, item["Key"], str(path))


def published_blobs(endpoints: Endpoints, run_date: str) -> tuple[dict, list[str]]:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(
        endpoints.azurite_connection_string
    ).get_container_client(lake.CONTAINER)
    latest = json.loads(container.download_blob(f"fruits/{run_date}/LATEST.json").readall())
    names = [b.name for b in container.list_blobs(name_starts_with=latest["prefix"])]
    return latest, names


def summary(results: Path, latest: dict, blobs: list[str]) -> str:
    manifest = json.loads((results / "features" / "_manifest.json").read_text())
    report = json.loads((results / "pca" / "report.json").read_text())
    metrics = json.loads((results / "classify" / "metrics.json").read_text())
    counts, weights = manifest["counts"], manifest["weights"]
    return "\n".join(
        [
            "",
            "Fruits! local run — done",
            f"  images read {counts['read']}, featurized {counts['featurized']}, "
            f"quarantined {counts['quarantined']}",
            f"  weights {weights['source']} (sha256 {weights['sha256'][:12]}…)",
            f"  PCA k = {report['k']} components, explained variance "
            f"{report['explained_variance_at_k']:.3f}",
            f"  classifier accuracy {metrics['accuracy']:.3f} on {metrics['counts']['Test']} "
            f"Test images (macro F1 {metrics['macro_f1']:.3f}, split: {metrics['split_rule']})",
            f"  Azure (Azurite) {lake.CONTAINER}/{latest['prefix']}: {len(blobs)} blobs",
            f"  results copied to {results}",
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=BUNDLED_SAMPLE)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--date", default=date.today().isoformat())
    parser.add_argument("--workdir", type=Path, default=REPO / ".local-runs")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        raise SystemExit(f"--images {args.images}: no such folder")
    weights = find_weights(args.weights)
    workdir = (args.workdir / args.date).resolve()
    (workdir / "airflow-home").mkdir(parents=True, exist_ok=True)

    with local_cloud(workdir) as endpoints:
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        photos = lake.upload_photos(s3, args.images)
        weights_uri, sha256 = lake.upload_weights(s3, weights)
        print(f"Local lake seeded: {photos} files from {args.images}, weights {weights.name}")
        config = lake.fruits_config(weights_uri, sha256)
        run_dag(
            airflow_env(endpoints, workdir / "airflow-home", config), args.date, workdir / "dag.log"
        )
        download_results(s3, args.date, workdir / "results")
        latest, blobs = published_blobs(endpoints, args.date)
    print(summary(workdir / "results", latest, blobs))
    return {"results": workdir / "results", "latest": latest, "blobs": blobs}


if __name__ == "__main__":
    main()
