"""The README's main job, for real: moto server + Azurite processes, `airflow dags test`,
the DAG on platform local running the three Spark jobs, the export verified in Azurite."""

import hashlib
import json

import pytest

from localdev import run_pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, pretrained_weights):
    workdir = tmp_path_factory.mktemp("local-run")
    return run_pipeline.main(
        ["--weights", str(pretrained_weights), "--date", "2026-11-24", "--workdir", str(workdir)]
    )


def test_every_output_arrived_in_azurite(local_run):
    prefix = local_run["latest"]["prefix"]
    names = {name[len(prefix) :] for name in local_run["blobs"]}
    assert {"features/_manifest.json", "pca/report.json", "classify/metrics.json"} <= names
    assert {"pca/scree.png", "pca/projection.png", "_EXPORT_MANIFEST.json"} <= names
    assert any(n.startswith("features/part-") and n.endswith(".parquet") for n in names)
    assert any(n.startswith("quarantine/part-") for n in names)
    assert any(n.startswith("pca/model/") for n in names)
    assert local_run["latest"]["objects"] == len(names) - 1  # all but the export manifest


def test_the_run_featurized_the_sample_and_scored_it(local_run):
    results = local_run["results"]
    manifest = json.loads((results / "features" / "_manifest.json").read_text())
    assert manifest["counts"] == {"read": 109, "featurized": 108, "quarantined": 1}
    # A fresh machine converts the weights once and keeps the model for the next runs.
    assert manifest["model"]["compiled_from"] == "weights"
    kept = list((results.parent / "scratch" / "caches" / "model-cache").glob("*.tflite"))
    assert [hashlib.sha256(k.read_bytes()).hexdigest() for k in kept] == [
        manifest["model"]["broadcast_sha256"]
    ]
    report = json.loads((results / "pca" / "report.json").read_text())
    assert report["explained_variance_at_k"] >= 0.95 and report["rows"] == 108
    metrics = json.loads((results / "classify" / "metrics.json").read_text())
    assert metrics["split_rule"] == "folders" and metrics["counts"] == {"Training": 72, "Test": 36}
    assert metrics["accuracy"] >= 0.9
