"""PCA and the classifier: k selection, refusals, the split rule, what the reports say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import classify
import pca
import splits

pytestmark = pytest.mark.spark


NIGHTS = ("2026-11-01", "2026-11-02", "2026-11-03")
SCHEMA = "path string, label string, split string, features array<float>"


def synthetic_rows(night: str, rows_per_class: int = 40, split: bool = True, seed: int = 0):
    """Three classes in 64-d around distinct centres (the same each night), low-rank: PCA
    should need few components."""
    centres = np.random.default_rng(0).normal(0, 5, (3, 64))
    rng = np.random.default_rng(seed)
    records = []
    for label_index, centre in enumerate(centres):
        for i in range(rows_per_class):
            folder = ("Training" if i % 4 else "Test") if split else "landing"
            vector = centre + rng.normal(0, 0.3, 64)
            records.append(
                (
                    f"s3://lake/landing/{night}/{folder}/c{label_index}/{i}.jpg",
                    f"c{label_index}",
                    folder if split else "",
                    vector.astype(np.float32).tolist(),
                )
            )
    return records


def write_night(spark, root: Path, night: str, records, complete: bool = True) -> Path:
    """A night's partition as featurize leaves it: Parquet, then its manifest (if complete)."""
    partition = root / f"ingest_date={night}"
    spark.createDataFrame(records, SCHEMA).write.mode("overwrite").parquet(str(partition))
    if complete:
        (partition / "_manifest.json").write_text(json.dumps({"night": night}))
    return partition


def run_pca(root: Path, output: Path, until: str, *extra: str) -> dict:
    pca.main(["--features", str(root), "--until", until, "--output", str(output), *extra])
    return json.loads((output / "report.json").read_text())


def read_rows(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas().sort_values("path").reset_index(drop=True)


def test_pca_writes_vectors_model_report_and_plots(spark, tmp_path):
    root = tmp_path / "features"
    for seed, night in enumerate(NIGHTS[:2]):
        write_night(spark, root, night, synthetic_rows(night, seed=seed))
    report = run_pca(root, tmp_path / "pca", NIGHTS[1], "--variance", "0.9")

    assert report["nights"] == list(NIGHTS[:2]) and report["nights_incomplete"] == []
    assert report["rows"] == {"fitted": 180, "projected": 240}  # Training rows; all rows
    assert report["feature_size"] == 64
    assert report["k_chosen_by"] == "variance" and report["variance_target"] == 0.9
    cumulative = report["cumulative_explained_variance"]
    assert len(cumulative) == 64 and cumulative[-1] == pytest.approx(1.0)
    assert (
        cumulative[report["k"] - 1] >= 0.9 > (cumulative[report["k"] - 2] if report["k"] > 1 else 0)
    )
    assert report["k"] <= 3  # three well-separated clusters

    vectors = read_rows(tmp_path / "pca" / "vectors")
    assert list(vectors.columns) == ["path", "label", "split", "ingest_date", "pca_features"]
    assert sorted(set(vectors["ingest_date"])) == list(NIGHTS[:2])
    assert {len(v) for v in vectors["pca_features"]} == {report["k"]}
    for plot in ("scree.png", "projection.png"):
        assert (tmp_path / "pca" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from pyspark.ml import PipelineModel

    model = PipelineModel.load(str(tmp_path / "pca" / "model"))
    assert pca.pca_stage(model).getK() == report["k"]
    # The saved model projects new images exactly as the job did.
    again = read_rows_of(pca.project(model, pca.read_nights(spark, str(root), list(NIGHTS[:2]))))
    np.testing.assert_allclose(
        np.stack(vectors["pca_features"]), np.stack(again["pca_features"]), atol=1e-5
    )


def read_rows_of(frame):
    return frame.toPandas().sort_values("path").reset_index(drop=True)


def test_the_fit_is_numpys_pca_of_the_training_rows_of_every_night_up_to_the_date(spark, tmp_path):
    """Three nights, each summarised once: the merged statistics give numpy's PCA of the history's
    Training rows; a later night is left out of an earlier date's fit; Test rows shape nothing;
    an incomplete night is named and left out."""
    root, moments = tmp_path / "features", tmp_path / "moments"
    nights = {night: synthetic_rows(night, seed=seed) for seed, night in enumerate(NIGHTS)}
    for night, records in nights.items():
        write_night(spark, root, night, records)
    write_night(spark, root, "2026-11-02T", [], complete=False)  # not a date: never matched
    write_night(spark, root, "2026-10-31", synthetic_rows("2026-10-31", seed=9), complete=False)

    report = run_pca(root, tmp_path / "pca", NIGHTS[1], "--k", "5", "--moments", str(moments))
    assert report["nights"] == list(NIGHTS[:2])
    assert report["nights_incomplete"] == ["2026-10-31"]
    kept = sorted(p.parent.name for p in moments.rglob("training_moments.npz"))
    assert kept == [f"ingest_date={night}" for night in NIGHTS[:2]]

    history = [r for night in NIGHTS[:2] for r in nights[night]]
    training = np.array([r[3] for r in history if r[2] == "Training"], np.float64)
    mean = training.mean(axis=0)
    _, singular, components = np.linalg.svd(training - mean, full_matrices=False)
    variance = singular**2 / (singular**2).sum()
    np.testing.assert_allclose(report["explained_variance"], variance, rtol=1e-6, atol=1e-12)
    vectors = read_rows(tmp_path / "pca" / "vectors")
    everything = np.array([r[3] for r in sorted(history)], np.float64)
    reference = (everything - mean) @ components[:5].T  # every row, centred by Training's mean
    ours = np.stack(vectors["pca_features"]).astype(np.float64)
    np.testing.assert_allclose(np.abs(ours), np.abs(reference), atol=1e-4 * np.abs(reference).max())

    # Test rows changed beyond recognition: the fit does not move.
    noisy = [
        (p, lbl, s, (np.asarray(f) * 50).tolist() if s == "Test" else f)
        for p, lbl, s, f in nights[NIGHTS[1]]
    ]
    write_night(spark, root, NIGHTS[1], noisy)
    again = run_pca(root, tmp_path / "pca-noisy-test", NIGHTS[1], "--k", "5")
    assert again["explained_variance"] == pytest.approx(report["explained_variance"], rel=1e-9)


def summarised_nights(capsys) -> list[str]:
    """The nights whose Training rows a PCA run read and summarised (its own log lines)."""
    lines = capsys.readouterr().out.splitlines()
    return [line.split()[2].rstrip(":") for line in lines if line.endswith("rows summarised")]


def test_a_night_reusing_kept_statistics_gives_the_bytes_of_a_full_recompute(
    spark, tmp_path, capsys
):
    """Night 3 with the statistics nights 1-2 left reads only its own rows, and equals night 3
    computed from scratch, byte for byte: the merge is exact and in a fixed order."""
    root, moments = tmp_path / "features", tmp_path / "moments"
    for seed, night in enumerate(NIGHTS):
        write_night(spark, root, night, synthetic_rows(night, seed=seed))
    for night in NIGHTS[:2]:  # the earlier nights ran before, each keeping its statistics
        run_pca(root, tmp_path / f"pca-{night}", night, "--moments", str(moments))
    kept = {p: p.read_bytes() for p in moments.rglob("*.npz")}
    assert len(kept) == 2
    capsys.readouterr()
    incremental = run_pca(root, tmp_path / "incremental", NIGHTS[2], "--moments", str(moments))
    assert summarised_nights(capsys) == [NIGHTS[2]]  # nights 1-2: their kept statistics
    full = run_pca(root, tmp_path / "full", NIGHTS[2])  # no kept statistics at all
    assert summarised_nights(capsys) == list(NIGHTS)

    assert {p: p.read_bytes() for p in moments.rglob("*.npz") if p in kept} == kept  # reused
    assert incremental == {**full, "moments": incremental.get("moments")} or incremental == full
    assert read_rows(tmp_path / "incremental" / "vectors").equals(
        read_rows(tmp_path / "full" / "vectors")
    )


def test_standardize_gives_the_pca_of_the_correlation_matrix(spark, tmp_path):
    """With --standardize a feature measured in huge units no longer takes the first component:
    the result is numpy's PCA of the standardised Training rows, and the saved model scales new
    rows too."""
    from splits import assign_splits

    rng = np.random.default_rng(1)
    rows = rng.normal(0, 1, (200, 6)) @ rng.normal(0, 1, (6, 6))  # correlated features
    rows[:, 0] *= 1000.0
    records = [(f"s3://lake/in/c/{i}.jpg", "c", "", r.tolist()) for i, r in enumerate(rows)]
    root = tmp_path / "features"
    write_night(spark, root, NIGHTS[0], records)
    splits = dict(
        assign_splits(spark.createDataFrame(records, SCHEMA)).select("path", "split").collect()
    )
    matrix = rows.astype(np.float32).astype(np.float64)  # what the job reads back
    training = matrix[[splits[r[0]] == "Training" for r in records]]

    for standardize in ("--no-standardize", "--standardize"):
        run_pca(root, tmp_path / standardize.strip("-"), NIGHTS[0], "--k", "3", standardize)
    plain = json.loads((tmp_path / "no-standardize" / "report.json").read_text())
    scaled = json.loads((tmp_path / "standardize" / "report.json").read_text())

    assert plain["standardize"] is False and scaled["standardize"] is True
    assert plain["explained_variance"][0] > 0.99  # the huge feature alone
    mean, std = training.mean(axis=0), training.std(axis=0, ddof=1)
    _, singular, components = np.linalg.svd((training - mean) / std, full_matrices=False)
    np.testing.assert_allclose(
        scaled["explained_variance"], singular**2 / (singular**2).sum(), rtol=1e-4, atol=1e-6
    )
    vectors = read_rows(tmp_path / "standardize" / "vectors")
    order = np.argsort([int(p.rsplit("/", 1)[1].split(".")[0]) for p in vectors["path"]])
    ours = np.stack(vectors["pca_features"])[order].astype(np.float64)
    reference = ((matrix - mean) / std) @ components[:3].T
    np.testing.assert_allclose(np.abs(ours), np.abs(reference), atol=1e-3 * np.abs(reference).max())


def test_pca_refuses_k_above_the_training_rows(spark, tmp_path):
    write_night(spark, tmp_path / "features", NIGHTS[0], synthetic_rows(NIGHTS[0], 5))
    with pytest.raises(SystemExit, match="exceeds the number of Training rows"):
        run_pca(tmp_path / "features", tmp_path / "pca", NIGHTS[0], "--k", "20")


def test_pca_refuses_a_night_without_complete_features(spark, tmp_path):
    write_night(spark, tmp_path / "features", NIGHTS[0], synthetic_rows(NIGHTS[0]), complete=False)
    with pytest.raises(SystemExit, match="no complete features partition"):
        run_pca(tmp_path / "features", tmp_path / "pca", NIGHTS[0])


def test_the_hash_split_is_deterministic_and_about_80_20(spark):
    from pyspark.sql import functions as F

    paths = spark.range(5000).select(F.concat(F.lit("s3://lake/x/"), F.col("id")).alias("path"))
    first = [r[0] for r in paths.select(splits.hash_split(F.col("path"))).collect()]
    again = [r[0] for r in paths.select(splits.hash_split(F.col("path"))).collect()]
    assert first == again
    assert 0.77 < first.count("Training") / len(first) < 0.83


def test_folder_splits_are_kept_and_the_rest_hashed(spark):
    rows = spark.createDataFrame(
        [("a.jpg", "Training"), ("b.jpg", "Test"), ("c.jpg", ""), ("d.jpg", "")],
        "path string, split string",
    )
    assert splits.split_rule(rows).startswith("folders, else hash")
    result = {r["path"]: r["split"] for r in splits.assign_splits(rows).collect()}
    assert result["a.jpg"] == "Training" and result["b.jpg"] == "Test"
    assert {result["c.jpg"], result["d.jpg"]} <= {"Training", "Test"}


def synthetic_features(spark, path: Path, split: bool = True) -> None:
    spark.createDataFrame(synthetic_rows(NIGHTS[0], split=split), SCHEMA).write.parquet(str(path))
    (path / "_manifest.json").write_text("{}")  # featurize's completion marker


@pytest.mark.parametrize("pca_output", [False, True])
def test_classify_refuses_an_input_without_its_completion_marker(spark, tmp_path, pca_output):
    features = tmp_path / "pca" / "vectors" if pca_output else tmp_path / "features"
    synthetic_features(spark, features)
    (features / "_manifest.json").unlink()  # what a failed featurize or pca leaves
    marker = "report.json" if pca_output else "_manifest.json"
    with pytest.raises(SystemExit, match=f"is incomplete \\(no {marker}"):
        classify.main(["--input", str(features), "--output", str(tmp_path / "classify")])


@pytest.mark.parametrize("split", [True, False])
def test_classify_reports_accuracy_per_class_and_the_rule(spark, tmp_path, split):
    synthetic_features(spark, tmp_path / "features", split=split)
    classify.main(["--input", str(tmp_path / "features"), "--output", str(tmp_path / "classify")])
    metrics = json.loads((tmp_path / "classify" / "metrics.json").read_text())
    assert metrics["features_column"] == "features"
    assert metrics["split_rule"] == ("folders" if split else "hash of path (80/20)")
    assert sum(metrics["counts"].values()) == 120
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0  # separable classes
    assert set(metrics["per_class"]) == {"c0", "c1", "c2"}
    assert (tmp_path / "classify" / "model").is_dir()


def test_per_class_metrics_count_errors_both_ways(spark):
    scored = spark.createDataFrame(
        [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")], "label string, predicted_label string"
    )
    metrics = classify.per_class_metrics(scored)
    assert metrics["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert metrics["b"]["precision"] == pytest.approx(2 / 3) and metrics["b"]["recall"] == 1.0
