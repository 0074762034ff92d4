"""PCA and the classifier: k selection, refusals, the split rule, what the reports say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import classify
import nights
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
        counts = {"read": len(records) + 1, "featurized": len(records), "quarantined": 1}
        (partition / "_manifest.json").write_text(json.dumps({"night": night, "counts": counts}))
    return partition


def run_pca(root: Path, output: Path, until: str, *extra: str) -> dict:
    """pca.py's night `until`; its vectors go to `<output>/vectors/ingest_date=<until>`."""
    vectors = output / "vectors" / f"ingest_date={until}"
    pca.main(
        ["--features", str(root), "--until", until, "--output", str(output)]
        + ["--vectors", str(vectors), *extra]
    )
    return json.loads((output / "report.json").read_text())


def read_rows(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas().sort_values("path").reset_index(drop=True)


def test_pca_writes_the_nights_vectors_model_basis_report_and_plots(spark, tmp_path):
    root = tmp_path / "features"
    for seed, night in enumerate(NIGHTS[:2]):
        write_night(spark, root, night, synthetic_rows(night, seed=seed))
    report = run_pca(root, tmp_path / "pca", NIGHTS[1], "--variance", "0.9")

    assert report["nights"] == list(NIGHTS[:2]) and report["nights_incomplete"] == []
    # The history's Training rows fitted (2 x 90); the night's rows projected (120), only them.
    assert report["rows"] == {"fitted": 180, "projected": 120}
    assert report["feature_size"] == 64
    assert report["k_chosen_by"] == "variance" and report["variance_target"] == 0.9
    cumulative = report["cumulative_explained_variance"]
    assert len(cumulative) == 64 and cumulative[-1] == pytest.approx(1.0)
    assert (
        cumulative[report["k"] - 1] >= 0.9 > (cumulative[report["k"] - 2] if report["k"] > 1 else 0)
    )
    assert report["k"] <= 3  # three well-separated clusters

    partition = tmp_path / "pca" / "vectors" / f"ingest_date={NIGHTS[1]}"
    vectors = read_rows(partition)
    assert list(vectors.columns) == ["path", "label", "split", "pca_features"]
    assert all(f"/{NIGHTS[1]}/" in path for path in vectors["path"]) and len(vectors) == 120
    assert set(vectors["split"]) == {"Training", "Test"}
    assert {len(v) for v in vectors["pca_features"]} == {report["k"]}
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert (manifest["night"], manifest["rows"], manifest["k"]) == (NIGHTS[1], 120, report["k"])
    for plot in ("scree.png", "projection.png"):
        assert (tmp_path / "pca" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import PCAModel

    model = PipelineModel.load(str(tmp_path / "pca" / "model"))
    assert next(s for s in model.stages if isinstance(s, PCAModel)).getK() == report["k"]
    # The saved model projects new images exactly as the job did...
    again = read_rows_of(nights.project(model, nights.read_nights(spark, str(root), [NIGHTS[1]])))
    np.testing.assert_allclose(
        np.stack(vectors["pca_features"]), np.stack(again["pca_features"]), atol=1e-5
    )
    # ...and so does its plain form, with numpy alone (the one-liner of the docs).
    basis = np.load(tmp_path / "pca" / "basis.npz")
    features = np.stack(read_rows(root / f"ingest_date={NIGHTS[1]}")["features"])
    plain = ((features - basis["mean"]) * basis["scale"]) @ basis["components"]
    np.testing.assert_allclose(plain, np.stack(vectors["pca_features"]), atol=1e-4)
    assert basis["explained_variance"].tolist() == report["explained_variance"][: report["k"]]


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
    vectors = read_rows(tmp_path / "pca" / "vectors" / f"ingest_date={NIGHTS[1]}")
    night = np.array([r[3] for r in sorted(nights[NIGHTS[1]])], np.float64)
    reference = (night - mean) @ components[:5].T  # the night's rows, centred by Training's mean
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
    where = ("vectors",)  # each run's own output folder
    assert {k: v for k, v in incremental.items() if k not in where} == {
        k: v for k, v in full.items() if k not in where
    }
    partition = Path("vectors") / f"ingest_date={NIGHTS[2]}"
    assert read_rows(tmp_path / "incremental" / partition).equals(
        read_rows(tmp_path / "full" / partition)
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
    vectors = read_rows(tmp_path / "standardize" / "vectors" / f"ingest_date={NIGHTS[0]}")
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


def new_class_rows(night: str, rows_per_class: int = 40):
    """A fourth class, far from the three others."""
    rng = np.random.default_rng(7)
    centre = np.full(64, 6.0)
    return [
        (
            f"s3://lake/landing/{night}/{folder}/c3/{i}.jpg",
            "c3",
            folder,
            (centre + rng.normal(0, 0.3, 64)).astype(np.float32).tolist(),
        )
        for i in range(rows_per_class)
        for folder in ["Training" if i % 4 else "Test"]
    ]


def run_classify(root: Path, moments: Path, tmp_path: Path, night: str, *extra: str) -> Path:
    """pca then classify for the night, as the pipeline chains them."""
    pca_output, output = tmp_path / f"pca-{night}", tmp_path / f"classify-{night}"
    run_pca(root, pca_output, night, "--moments", str(moments))
    classify.main(
        [
            *("--features", str(root), "--until", night, "--pca", str(pca_output)),
            *("--moments", str(moments), "--output", str(output), *extra),
        ]
    )
    return output


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def two_nights(spark, tmp_path_factory):
    """Night 1: three classes; night 2: the same three and a new one. Each night classified
    after its pca, the statistics kept between them."""
    tmp_path = tmp_path_factory.mktemp("classify")
    root, moments = tmp_path / "features", tmp_path / "moments"
    records = {
        NIGHTS[0]: synthetic_rows(NIGHTS[0], seed=0),
        NIGHTS[1]: synthetic_rows(NIGHTS[1], seed=1) + new_class_rows(NIGHTS[1]),
    }
    outputs = {}
    for night, rows in records.items():
        write_night(spark, root, night, rows)
        outputs[night] = run_classify(root, moments, tmp_path, night)
    return tmp_path, root, moments, records, outputs


def test_classify_scores_the_night_prequential_and_refit_and_sums_the_history(two_nights):
    _, _, moments, _, outputs = two_nights
    first, second = (read_json(outputs[night] / "metrics.json") for night in NIGHTS[:2])
    assert first["evaluations"]["prequential_night"] is None  # no model before the first night
    assert first["counts"] == {"Training": 90, "Test": 30} and first["accuracy"] == 1.0
    assert second["split_rule"] == "folders" and second["classes"] == 4
    assert second["counts"] == {
        "Training": 90 + 120,
        "Test": 40,
    }  # history's Training, night's Test
    evaluations = second["evaluations"]
    assert evaluations["refit_night"]["accuracy"] == 1.0 and second["accuracy"] == 1.0
    # The night before's model never saw c3: its 10 Test photos are its errors, nothing else.
    assert evaluations["prequential_night"]["test_rows"] == 40
    assert evaluations["prequential_night"]["correct"] == 30
    assert set(second["per_class"]) == {"c0", "c1", "c2", "c3"}
    # History to date: sums of the nights' counts (prequential: night 2 only has a model before).
    assert evaluations["prequential_history"] | {"model": None, "scored": None} == {
        "model": None,
        "scored": None,
        "nights": 1,
        "test_rows": 40,
        "correct": 30,
        "accuracy": 0.75,
        "macro_f1": evaluations["prequential_night"]["macro_f1"],
    }
    assert evaluations["refit_history"]["test_rows"] == 30 + 40
    assert evaluations["refit_history"]["correct"] == 70
    kept = {p.relative_to(moments).as_posix() for p in moments.rglob("*") if "crc" not in p.name}
    for night in NIGHTS[:2]:
        for name in ("training_moments.npz", "class_sums.npz", "evaluation.json"):
            assert f"ingest_date={night}/{name}" in kept


def test_the_model_is_one_spark_call_giving_the_lda_posterior_of_the_rows(spark, two_nights):
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import array_to_vector

    from test_discriminant import reference_lda

    _, _, _, records, outputs = two_nights
    model = PipelineModel.load(str(outputs[NIGHTS[1]] / "model"))
    history = [r for night in NIGHTS[:2] for r in records[night]]
    frame = spark.createDataFrame(history, SCHEMA)
    scored = model.transform(frame.withColumn("features_vector", array_to_vector("features")))
    result = scored.select("path", "label", "predicted_label", "probability").collect()

    training = [r for r in history if r[2] == "Training"]
    labels = np.array([r[1] for r in training])
    names, coefficients, intercepts = reference_lda(
        labels, np.array([r[3] for r in training], np.float32), 0.1
    )
    rows = {r[0]: np.asarray(r[3], np.float64) for r in history}
    for row in result:
        logits = coefficients @ rows[row["path"]] + intercepts
        posterior = np.exp(logits - logits.max())
        np.testing.assert_allclose(
            row["probability"].toArray(), posterior / posterior.sum(), atol=1e-6
        )
        assert row["predicted_label"] == names[int(np.argmax(logits))] == row["label"]


def test_the_night_report_says_what_changed(two_nights):
    _, _, _, _, outputs = two_nights
    report = read_json(outputs[NIGHTS[1]] / "report.json")
    assert report["classes"] == {"night": 4, "history": 3, "new": ["c3"]}
    assert report["photos"]["quarantine_rate"] == pytest.approx(1 / 161)
    mix = {m["label"]: m for m in report["class_mix"]}
    assert mix["c3"]["history_rows"] == 0 and mix["c3"]["night_share"] == pytest.approx(0.25)
    assert mix["c0"]["history_share"] == pytest.approx(1 / 3)
    assert [t["night"] for t in report["accuracy_trend"]] == list(NIGHTS[:2])
    assert report["prequential_accuracy"] == 0.75
    shift = report["mean_shift"]
    assert set(shift["per_class"]) == {"c0", "c1", "c2"}  # c3 has no history to move from
    # Same centres, new noise: each class moved a fraction of its spread (~0.3 * 8 per row).
    assert all(0 < m["in_spreads"] < 0.5 for m in shift["per_class"].values())
    assert shift["overall"]["in_spreads"] > 1  # the mix moved the overall mean: c3 is far away
    assert read_json(outputs[NIGHTS[0]] / "report.json")["mean_shift"] is None
    assert (outputs[NIGHTS[1]] / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_night_whose_statistics_are_missing_is_recomputed_once(spark, two_nights):
    """Night 1's class sums and evaluation lost: night 2 again computes them from night 1's
    features, keeps them, and gives the same model and figures."""
    tmp_path, root, moments, _, outputs = two_nights
    partition = moments / f"ingest_date={NIGHTS[0]}"
    kept = {name: (partition / name).read_bytes() for name in ("class_sums.npz", "evaluation.json")}
    for name in kept:
        (partition / name).unlink()
    again = run_classify(root, moments, tmp_path / "again", NIGHTS[1])
    assert {name: (partition / name).read_bytes() for name in kept} == kept
    before = read_json(outputs[NIGHTS[1]] / "metrics.json")
    assert read_json(again / "metrics.json") == before
    first = read_json(partition / "evaluation.json")
    assert first["prequential"] is None and sum(n for _, _, n in first["refit"]) == 30


@pytest.mark.parametrize("argv", [["--shrinkage", "1.5"], ["--until", "25/11/2026"]])
def test_classify_refuses_bad_arguments(argv, capsys):
    base = ["--features", "f", "--until", "2026-11-25", "--pca", "p", "--moments", "m"]
    with pytest.raises(SystemExit):
        classify.parse_args([*base, "--output", "o", *argv])
    error = capsys.readouterr().err
    assert "--shrinkage must be in [0, 1]" in error or "is not a date" in error


def test_classify_refuses_a_pca_output_without_its_report(spark, tmp_path):
    root = tmp_path / "features"
    write_night(spark, root, NIGHTS[0], synthetic_rows(NIGHTS[0]))
    (tmp_path / "pca").mkdir()  # what a failed pca leaves
    with pytest.raises(SystemExit, match="is incomplete \\(no report.json"):
        classify.main(
            [
                *("--features", str(root), "--until", NIGHTS[0], "--pca", str(tmp_path / "pca")),
                *("--moments", str(tmp_path / "m"), "--output", str(tmp_path / "c")),
            ]
        )


def test_project_puts_a_range_of_nights_in_one_nights_basis(spark, tmp_path):
    """project.py: nights 1-3's features through night 2's model, nights 2-3 asked for: both
    projected (and only them), partitioned by night, as numpy does it from basis.npz."""
    import project

    root = tmp_path / "features"
    for seed, night in enumerate(NIGHTS):
        write_night(spark, root, night, synthetic_rows(night, seed=seed))
    run_pca(root, tmp_path / "pca", NIGHTS[1], "--k", "3")
    output = tmp_path / "november"
    project.main(
        ["--features", str(root), "--since", NIGHTS[1], "--until", NIGHTS[2]]
        + ["--model", str(tmp_path / "pca" / "model"), "--output", str(output)]
    )

    manifest = json.loads((output / "_manifest.json").read_text())
    assert manifest["nights"] == list(NIGHTS[1:]) and manifest["rows"] == 240
    assert sorted(p.name for p in output.glob("ingest_date=*")) == [
        f"ingest_date={night}" for night in NIGHTS[1:]
    ]
    basis = np.load(tmp_path / "pca" / "basis.npz")
    for night in NIGHTS[1:]:
        ours = read_rows(output / f"ingest_date={night}")
        features = np.stack(read_rows(root / f"ingest_date={night}")["features"])
        plain = ((features - basis["mean"]) * basis["scale"]) @ basis["components"]
        np.testing.assert_allclose(np.stack(ours["pca_features"]), plain, atol=1e-4)


def test_project_refuses_a_range_without_nights(spark, tmp_path, capsys):
    import project

    with pytest.raises(SystemExit):
        project.parse_args(
            ["--features", "f", "--since", "2026-11-03", "--until", "2026-11-01"]
            + ["--model", "m", "--output", "o"]
        )
    assert "is after --until" in capsys.readouterr().err
    write_night(spark, tmp_path / "features", NIGHTS[0], synthetic_rows(NIGHTS[0]))
    with pytest.raises(SystemExit, match="no complete features partition from 2026-12-01"):
        project.main(
            ["--features", str(tmp_path / "features"), "--since", "2026-12-01"]
            + ["--until", "2026-12-31", "--model", "m", "--output", str(tmp_path / "o")]
        )
