"""The README's main job, for real, two nights in a row: moto server + Azurite processes,
`airflow dags test`, the DAG on platform local running the three Spark jobs, the export verified
in Azurite, the lake kept on disk between the two runs."""

import json

import pytest

from localdev import run_pipeline

pytestmark = pytest.mark.e2e
NIGHTS = ("2026-11-23", "2026-11-24")


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory, pretrained_weights):
    """The bundled sample landed on two nights: the second featurizes only its own photos."""
    workdir = tmp_path_factory.mktemp("local-run")
    common = ["--weights", str(pretrained_weights), "--workdir", str(workdir)]
    first = run_pipeline.main([*common, "--date", NIGHTS[0], "--fresh"])
    first_partition = {
        p.relative_to(workdir): p.read_bytes()
        for p in (workdir / "lake" / "features" / f"ingest_date={NIGHTS[0]}").rglob("*")
        if p.is_file()
    }
    second = run_pipeline.main([*common, "--date", NIGHTS[1]])
    return workdir, first, second, first_partition


def read(results, relative: str) -> dict:
    return json.loads((results / relative).read_text())


def test_every_output_arrived_in_azurite(two_nights):
    _, _, second, _ = two_nights
    folders = second["latest"]["folders"]  # each table's partition, and the run's folder
    names = {
        f"{folder}/{name[len(prefix) :]}"
        for folder, prefix in folders.items()
        for name in second["blobs"]
        if name.startswith(prefix)
    }
    assert {"features/_manifest.json", "run/pca/report.json", "run/classify/metrics.json"} <= names
    assert {"run/pca/scree.png", "run/pca/projection.png", "run/_EXPORT_MANIFEST.json"} <= names
    assert {"vectors/_manifest.json", "run/pca/basis.npz"} <= names
    assert {"run/classify/report.json", "run/classify/report.png"} <= names
    assert any(n.startswith("features/part-") and n.endswith(".parquet") for n in names)
    assert any(n.startswith("vectors/part-") and n.endswith(".parquet") for n in names)
    assert any(n.startswith("quarantine/part-") for n in names)
    assert any(n.startswith("run/pca/model/") for n in names)
    assert second["latest"]["objects"] == len(names) - 1  # all but the export manifest


def test_each_night_featurizes_its_own_photos_and_refits_over_the_history(two_nights):
    workdir, first, second, first_partition = two_nights
    for run in (first, second):  # the sample, landed each night: 108 photos and one HTML page
        manifest = read(run["results"], "features/_manifest.json")
        assert manifest["counts"] == {"read": 109, "featurized": 108, "quarantined": 1}
    # The first night converts the weights; the second takes the model from the lake's cache.
    first_log, second_log = ((workdir / night / "dag.log").read_text() for night in NIGHTS)
    assert "featurize: model converted from the weights" in first_log
    (kept,) = (workdir / "lake" / "models" / "compiled").glob("*.tflite")
    assert "featurize: model file:" in second_log and f"/models/compiled/{kept.name}" in second_log

    first_report = read(first["results"], "pca/report.json")
    second_report = read(second["results"], "pca/report.json")
    assert first_report["nights"] == [NIGHTS[0]]
    # The history's Training rows fitted; the night's rows (only them) projected.
    assert first_report["rows"] == {"fitted": 72, "projected": 108}
    assert second_report["nights"] == list(NIGHTS)
    assert second_report["rows"] == {"fitted": 144, "projected": 108}
    assert second_report["explained_variance_at_k"] >= 0.95
    metrics = read(second["results"], "classify/metrics.json")
    # Fitted on both nights' Training rows (from their kept statistics), scored on the night's Test.
    assert metrics["split_rule"] == "folders" and metrics["counts"] == {"Training": 144, "Test": 36}
    assert metrics["accuracy"] >= 0.9
    assert metrics["evaluations"]["prequential_night"]["test_rows"] == 36
    assert metrics["evaluations"]["refit_history"]["test_rows"] == 72

    # The second night left the first night's partition as it was, byte for byte.
    saved = workdir / "lake" / "features" / f"ingest_date={NIGHTS[0]}"
    assert {p.relative_to(workdir): p.read_bytes() for p in saved.rglob("*") if p.is_file()} == (
        first_partition
    )
    for name in ("training_moments.npz", "class_sums.npz", "evaluation.json"):
        kept = sorted(p.parent.name for p in (workdir / "lake" / "moments").rglob(name))
        assert kept == [f"ingest_date={night}" for night in NIGHTS]


def test_the_run_said_each_task_as_it_started_and_ended(two_nights):
    _, first, _, _ = two_nights
    lines = first["progress"]
    for task in ("resolve_config", "local.run_featurize_locally", "publish.verify_and_publish"):
        (done,) = [line for line in lines if line.startswith(f"done    {task}  ")]
        assert done.endswith(" s"), done  # with its duration
    started = lines.index("start   local.run_featurize_locally")
    assert started < lines.index(next(x for x in lines if "done    local.run_featurize" in x))
    assert any(line.startswith("skipped ") and "emr." in line for line in lines)
