"""featurize.main in-process: re-runs replace the output, and each way a run can fail says why."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

import backbone
import featurize
import featurize_worker

pytestmark = pytest.mark.spark

SMALL = ["--image-size", "32"]  # seeded random weights at 32x32 (conftest): fast, same code path


def photos(sample_dir: Path, target: Path, split: str, count: int) -> Path:
    source = sorted((sample_dir / split).iterdir())[0]
    (target / split / source.name).mkdir(parents=True)
    for image in sorted(source.glob("*.jpg"))[:count]:
        shutil.copy(image, target / split / source.name / image.name)
    return target


def run(input_dir: Path, output: Path, weights: Path, *extra: str) -> dict:
    featurize.main(
        ["--input", str(input_dir), "--output", str(output), "--weights", str(weights)]
        + SMALL
        + list(extra)
    )
    return json.loads((output / "_manifest.json").read_text())


def parquet_rows(path: Path) -> list[dict]:
    """The rows of a Parquet output, by path (Spark gives no order across part files)."""
    import pyarrow.parquet as pq

    return sorted(pq.read_table(path).to_pylist(), key=lambda row: row["path"])


def test_a_rerun_replaces_the_output_completely(spark, tmp_path, sample_dir, random_weights):
    big = photos(sample_dir, tmp_path / "big", "Training", 12)
    (big / "Training" / "bad.jpg").write_bytes(b"GIF89a not really")
    small = photos(sample_dir, tmp_path / "small", "Test", 5)
    output = tmp_path / "out" / "features"

    first = run(big, output, random_weights)
    assert first["counts"] == {"read": 13, "featurized": 12, "quarantined": 1}
    second = run(small, output, random_weights)
    assert second["counts"] == {"read": 5, "featurized": 5, "quarantined": 0}

    rows = parquet_rows(output)
    assert len(rows) == 5 and {r["split"] for r in rows} == {"Test"}
    assert parquet_rows(Path(f"{output}_quarantine")) == []  # the first run's bad.jpg is gone
    assert len({r["path"] for r in rows}) == 5


def test_the_keras_engine_gives_the_same_features(spark, tmp_path, sample_dir, random_weights):
    images = photos(sample_dir, tmp_path / "in", "Test", 6)
    run(images, tmp_path / "tflite", random_weights)
    manifest = run(images, tmp_path / "keras", random_weights, "--engine", "keras")
    assert manifest["model"]["engine"] == "keras"

    import numpy as np

    tflite = {r["path"]: np.asarray(r["features"]) for r in parquet_rows(tmp_path / "tflite")}
    keras = {r["path"]: np.asarray(r["features"]) for r in parquet_rows(tmp_path / "keras")}
    assert tflite.keys() == keras.keys()
    for path, vector in keras.items():
        cosine = vector @ tflite[path] / np.linalg.norm(vector) / np.linalg.norm(tflite[path])
        assert cosine >= 0.9999


def model_origin(capsys) -> str:
    """Where the last run's model came from, as the job says it (not in its manifest)."""
    said = [line for line in capsys.readouterr().out.splitlines() if "featurize: model " in line]
    return said[-1].split("featurize: model ", 1)[1]


def test_the_model_cache_converts_each_weights_version_once(
    spark, tmp_path, sample_dir, random_weights, capsys
):
    images = photos(sample_dir, tmp_path / "in", "Test", 4)
    cache = tmp_path / "model-cache"
    cold = run(images, tmp_path / "cold", random_weights, "--model-cache", str(cache))
    cold_origin = model_origin(capsys)
    warm = run(images, tmp_path / "warm", random_weights, "--model-cache", str(cache))

    assert cold_origin == "converted from the weights"
    (cached,) = cache.glob("*.tflite")
    assert cached.name.startswith(f"mobilenet_v2-{cold['weights']['sha256'][:16]}-32px-tf")
    assert model_origin(capsys).endswith(cached.name)
    assert warm == {**cold, "output": warm["output"], "quarantine": warm["quarantine"]}
    assert warm["model"]["broadcast_sha256"] == cold["model"]["broadcast_sha256"]
    import numpy as np

    # Same model bytes; features equal up to float rounding (XNNPack may sum in another order).
    warm_rows, cold_rows = parquet_rows(tmp_path / "warm"), parquet_rows(tmp_path / "cold")
    assert [r["path"] for r in warm_rows] == [r["path"] for r in cold_rows]
    for warm_row, cold_row in zip(warm_rows, cold_rows, strict=True):
        assert (warm_row["label"], warm_row["split"]) == (cold_row["label"], cold_row["split"])
        np.testing.assert_allclose(warm_row["features"], cold_row["features"], rtol=1e-4, atol=1e-9)


def test_a_damaged_cached_model_is_converted_again(
    spark, tmp_path, sample_dir, random_weights, capsys
):
    images = photos(sample_dir, tmp_path / "in", "Test", 3)
    cache = tmp_path / "model-cache"
    run(images, tmp_path / "cold", random_weights, "--model-cache", str(cache))
    (cached,) = cache.glob("*.tflite")
    cached.write_bytes(cached.read_bytes()[:1000])  # as a write cut short would leave it

    capsys.readouterr()
    repaired = run(images, tmp_path / "repaired", random_weights, "--model-cache", str(cache))
    said = capsys.readouterr()
    assert "featurize: model converted from the weights" in said.out
    assert repaired["counts"] == {"read": 3, "featurized": 3, "quarantined": 0}
    assert cached.name in said.err and "not a valid Flatbuffer" in said.err

    run(images, tmp_path / "warm", random_weights, "--model-cache", str(cache))
    assert model_origin(capsys).endswith(cached.name)  # the cache is whole again


def test_an_empty_input_fails_with_a_clear_message(spark, tmp_path, random_weights):
    (tmp_path / "empty" / "Training").mkdir(parents=True)
    (tmp_path / "empty" / "Training" / "notes.txt").write_text("no photos here")
    with pytest.raises(SystemExit, match="no .jpg/.jpeg/.png images found under"):
        run(tmp_path / "empty", tmp_path / "out", random_weights)


def test_a_missing_input_fails_with_a_clear_message(spark, tmp_path, random_weights):
    with pytest.raises(SystemExit, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "out", random_weights)


def test_nothing_readable_fails_but_keeps_the_quarantine(spark, tmp_path, random_weights):
    (tmp_path / "in" / "Kiwi").mkdir(parents=True)
    for name in ("a.jpg", "b.png"):
        (tmp_path / "in" / "Kiwi" / name).write_bytes(b"\x00\x01garbage")
    with pytest.raises(SystemExit, match="none of the 2 images .* could be read"):
        run(tmp_path / "in", tmp_path / "out", random_weights)
    quarantined = parquet_rows(tmp_path / "out_quarantine")
    assert sorted(Path(r["path"]).name for r in quarantined) == ["a.jpg", "b.png"]
    assert not (tmp_path / "out" / "_manifest.json").exists()


@pytest.fixture
def offline(tmp_path, monkeypatch) -> list:
    """No internet and an empty Keras cache, whatever this machine has: every connection to a
    host other than this one is refused (and recorded)."""
    from keras.src.backend import config as keras_config  # where keras.utils.get_file caches

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))
    refused, getaddrinfo = [], socket.getaddrinfo

    def no_internet(host, *args, **kwargs):
        if host not in ("localhost", "127.0.0.1", "::1"):
            refused.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"offline (test): {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_internet)
    return refused


def test_offline_imagenet_weights_fail_loudly_without_fallback(offline, tmp_path):
    with pytest.raises(SystemExit, match="pass --weights with the URI of a pinned") as exited:
        backbone.load_weights_on_driver("imagenet", 32, "tflite", storage=None)
    assert offline, "no download was tried: the weights came from somewhere else"
    assert "URL fetch failure" in str(exited.value)  # the download's own error, named
    assert not [p for p in (tmp_path / "keras").rglob("*") if p.is_file()]  # nothing half-kept


@pytest.mark.parametrize(
    ("path", "label", "split"),
    [
        ("s3://lake/in/Training/Apple Red 1/0_100.jpg", "Apple Red 1", "Training"),
        ("file:/data/fruits/Test/Kiwi/r_3_100.jpg", "Kiwi", "Test"),
        ("s3://lake/landing/2026-11-25/Kiwi/photo.png", "Kiwi", ""),
        ("s3://lake/Test/archive/Training/Banana/b.jpg", "Banana", "Training"),  # nearest wins
        ("s3://lake/Testing/Banana/b.jpg", "Banana", ""),  # whole folder names only
    ],
)
def test_label_and_split_from_the_path(spark, path, label, split):
    from pyspark.sql import functions as F

    row = (
        spark.createDataFrame([(path,)], "path string")
        .select(
            featurize_worker.label_of(F.col("path")).alias("label"),
            featurize_worker.split_of(F.col("path")).alias("split"),
        )
        .first()
    )
    assert (row["label"], row["split"]) == (label, split)
