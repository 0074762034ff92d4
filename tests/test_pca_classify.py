"""PCA and the classifier: k selection, refusals, the split rule, what the reports say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import classify
import pca

pytestmark = pytest.mark.spark


def test_k_is_the_fewest_components_reaching_the_target():
    cumulative = [0.5, 0.8, 0.95, 0.99, 1.0]
    assert pca.choose_k(cumulative, 0.95) == 3
    assert pca.choose_k(cumulative, 0.5) == 1
    assert pca.choose_k(cumulative, 0.96) == 4
    assert pca.choose_k(cumulative, 1.0) == 5
    assert pca.choose_k([0.3, 0.9499999999999], 0.95) == 2  # float noise at the threshold


@pytest.mark.parametrize(("k", "message"), [(1281, "feature size"), (101, "number of rows")])
def test_a_k_too_large_is_refused(k, message):
    with pytest.raises(SystemExit, match=message):
        pca.check_k(k, feature_size=1280, rows=100)


@pytest.mark.parametrize("argv", [["--variance", "0"], ["--variance", "1.2"], ["--k", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        pca.parse_args(["--input", "x", "--output", "y", *argv])
    assert "must be" in capsys.readouterr().err


def synthetic_features(spark, path: Path, rows_per_class: int = 40, split: bool = True) -> None:
    """Three classes in 64-d around distinct centres, low-rank: PCA should need few components."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 64))
    records = []
    for label_index, centre in enumerate(centres):
        for i in range(rows_per_class):
            folder = ("Training" if i % 4 else "Test") if split else "landing"
            vector = centre + rng.normal(0, 0.3, 64)
            records.append(
                (
                    f"s3://lake/{folder}/c{label_index}/{i}.jpg",
                    f"c{label_index}",
                    folder if split else "",
                    vector.astype(np.float32).tolist(),
                )
            )
    spark.createDataFrame(
        records, "path string, label string, split string, features array<float>"
    ).write.parquet(str(path))


def test_pca_writes_vectors_model_report_and_plots(spark, tmp_path):
    synthetic_features(spark, tmp_path / "features")
    pca.main(
        [
            "--input",
            str(tmp_path / "features"),
            "--output",
            str(tmp_path / "pca"),
            "--variance",
            "0.9",
        ]
    )

    report = json.loads((tmp_path / "pca" / "report.json").read_text())
    assert report["rows"] == 120 and report["feature_size"] == 64
    assert report["k_chosen_by"] == "variance" and report["variance_target"] == 0.9
    cumulative = report["cumulative_explained_variance"]
    assert len(cumulative) == 64 and cumulative[-1] == pytest.approx(1.0)
    assert (
        cumulative[report["k"] - 1] >= 0.9 > (cumulative[report["k"] - 2] if report["k"] > 1 else 0)
    )
    assert report["k"] <= 3  # three well-separated clusters

    import pyarrow.parquet as pq

    vectors = pq.read_table(tmp_path / "pca" / "vectors").to_pandas()
    assert list(vectors.columns) == ["path", "label", "split", "pca_features"]
    assert {len(v) for v in vectors["pca_features"]} == {report["k"]}
    for plot in ("scree.png", "projection.png"):
        assert (tmp_path / "pca" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from pyspark.ml import PipelineModel

    model = PipelineModel.load(str(tmp_path / "pca" / "model"))
    assert pca.pca_stage(model).getK() == report["k"]
    # The saved model projects new images exactly as the job did.
    again = pca.project(model, pca.load_features(spark, str(tmp_path / "features"))).toPandas()
    ours, theirs = (frame.sort_values("path") for frame in (vectors, again))
    np.testing.assert_allclose(
        np.stack(ours["pca_features"]), np.stack(theirs["pca_features"]), atol=1e-5
    )


def test_standardize_gives_the_pca_of_the_correlation_matrix(spark, tmp_path):
    """With --standardize a feature measured in huge units no longer takes the first component:
    the result is numpy's PCA of the standardised rows, and the saved model scales new rows too."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    rows = rng.normal(0, 1, (200, 6)) @ rng.normal(0, 1, (6, 6))  # correlated features
    rows[:, 0] *= 1000.0
    records = [(f"s3://lake/in/c/{i}.jpg", "c", "", r.tolist()) for i, r in enumerate(rows)]
    schema = "path string, label string, split string, features array<float>"
    spark.createDataFrame(records, schema).write.parquet(str(tmp_path / "features"))
    matrix = rows.astype(np.float32).astype(np.float64)  # what the job reads back

    for standardize in ("--no-standardize", "--standardize"):
        output = tmp_path / standardize.strip("-")
        argv = ["--input", str(tmp_path / "features"), "--output", str(output), "--k", "3"]
        pca.main([*argv, standardize])
    plain = json.loads((tmp_path / "no-standardize" / "report.json").read_text())
    scaled = json.loads((tmp_path / "standardize" / "report.json").read_text())

    assert plain["standardize"] is False and scaled["standardize"] is True
    assert plain["explained_variance"][0] > 0.99  # the huge feature alone
    standardised = (matrix - matrix.mean(axis=0)) / matrix.std(axis=0, ddof=1)
    _, singular, components = np.linalg.svd(standardised, full_matrices=False)
    np.testing.assert_allclose(
        scaled["explained_variance"], singular**2 / (singular**2).sum(), rtol=1e-4, atol=1e-6
    )
    vectors = pq.read_table(tmp_path / "standardize" / "vectors").to_pandas()
    order = np.argsort([int(p.rsplit("/", 1)[1].split(".")[0]) for p in vectors["path"]])
    ours = np.stack(vectors["pca_features"])[order].astype(np.float64)
    reference = standardised @ components[:3].T
    np.testing.assert_allclose(np.abs(ours), np.abs(reference), atol=1e-3 * np.abs(reference).max())


def test_pca_refuses_k_above_the_rows(spark, tmp_path):
    synthetic_features(spark, tmp_path / "features", rows_per_class=5)
    with pytest.raises(SystemExit, match="exceeds the number of rows"):
        pca.main(
            ["--input", str(tmp_path / "features"), "--output", str(tmp_path / "pca"), "--k", "20"]
        )


def test_the_hash_split_is_deterministic_and_about_80_20(spark):
    from pyspark.sql import functions as F

    paths = spark.range(5000).select(F.concat(F.lit("s3://lake/x/"), F.col("id")).alias("path"))
    first = [r[0] for r in paths.select(classify.hash_split(F.col("path"))).collect()]
    again = [r[0] for r in paths.select(classify.hash_split(F.col("path"))).collect()]
    assert first == again
    assert 0.77 < first.count("Training") / len(first) < 0.83


def test_folder_splits_are_kept_and_the_rest_hashed(spark):
    rows = spark.createDataFrame(
        [("a.jpg", "Training"), ("b.jpg", "Test"), ("c.jpg", ""), ("d.jpg", "")],
        "path string, split string",
    )
    assert classify.split_rule(rows).startswith("folders, else hash")
    result = {r["path"]: r["split"] for r in classify.assign_splits(rows).collect()}
    assert result["a.jpg"] == "Training" and result["b.jpg"] == "Test"
    assert {result["c.jpg"], result["d.jpg"]} <= {"Training", "Test"}


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
