"""Both of Keras' weights formats load, recognised by their content; a bad --weights is named.

Keras 3 reads a `.weights.h5` file with its own loader and a legacy `.h5` (Keras 2's
save_weights, and Keras' own ImageNet file that the README tells production to upload) with
another, chosen by the file's name; the job must not trust the name it is given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import backbone
import featurize
import featurize_worker
from benchmarks.keras_reference import cosine_rows, keras_features

pytestmark = pytest.mark.spark

SIZE = 96  # the pretrained weights at a smaller input: the same layers, a quarter of the work


def some_photos(sample_dir: Path, target: Path, count: int = 4) -> list[Path]:
    folder = sorted((sample_dir / "Test").iterdir())[0]
    (target / "Test" / folder.name).mkdir(parents=True)
    return [
        Path(shutil.copy(photo, target / "Test" / folder.name / photo.name))
        for photo in sorted(folder.glob("*.jpg"))[:count]
    ]


def legacy_copy(weights: Path, target: Path) -> Path:
    """The same weights written by Keras' legacy HDF5 saver (the format of Keras' own file)."""
    from keras.src.legacy.saving import legacy_h5_format

    model = backbone.build_keras_backbone(SIZE)
    model.load_weights(weights)
    with h5py.File(target, "w") as h5:
        legacy_h5_format.save_weights_to_hdf5_group(h5, model)
    return target


def featurize_with(weights: Path, photos_dir: Path, output: Path) -> tuple[dict, np.ndarray]:
    featurize.main(
        ["--input", str(photos_dir), "--output", str(output), "--weights", str(weights)]
        + ["--image-size", str(SIZE)]
    )
    return read_features(output)


def read_features(output: Path) -> tuple[dict, np.ndarray]:
    """The manifest, and the features in the order of their paths."""
    import pyarrow.parquet as pq

    rows = sorted(pq.read_table(output).to_pylist(), key=lambda row: row["path"])
    manifest = json.loads((output / "_manifest.json").read_text())
    return manifest, np.array([row["features"] for row in rows], dtype=np.float32)


def test_keras_legacy_weights_give_the_same_features(
    spark, tmp_path, sample_dir, pretrained_weights
):
    photos = some_photos(sample_dir, tmp_path / "in")
    # Named like the new format on purpose: the content decides, not the name.
    legacy = legacy_copy(pretrained_weights, tmp_path / "legacy.weights.h5")
    assert "layer_names" in h5py.File(legacy, "r").attrs  # it really is the legacy layout

    manifest, features = featurize_with(legacy, tmp_path / "in", tmp_path / "out")

    assert manifest["weights"]["format"] == backbone.LEGACY_WEIGHTS
    expected = keras_features(sorted(photos), pretrained_weights, SIZE)  # the Keras 3 file
    assert cosine_rows(features, expected).min() >= 0.9999


def test_the_manifest_names_the_keras3_format(spark, tmp_path, sample_dir, random_weights):
    some_photos(sample_dir, tmp_path / "in", count=2)
    renamed = Path(shutil.copy(random_weights, tmp_path / "backbone.h5"))  # a legacy-looking name
    featurize.main(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
        + ["--weights", str(renamed), "--image-size", "32"]
    )
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["weights"]["format"] == backbone.KERAS3_WEIGHTS


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "--weights {path}: no such file"),
        (b"<html>403 Forbidden</html>", "--weights {path} is not an HDF5 file"),
    ],
)
def test_bad_weights_are_named_before_any_image_is_featurized(
    spark, tmp_path, sample_dir, content, says
):
    some_photos(sample_dir, tmp_path / "in", count=2)
    path = tmp_path / "mobilenet.weights.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        featurize.main(
            ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
            + ["--weights", str(path), "--image-size", "32"]
        )
    assert says.format(path=f"file://{path}") in str(stopped.value)
    assert not (tmp_path / "out").exists()


def test_weights_of_another_model_are_named(tmp_path):
    import keras

    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(other)
    storage = backbone.Storage(
        read=lambda uri: Path(uri).read_bytes(), write=None, exists=lambda uri: Path(uri).exists()
    )
    with pytest.raises(SystemExit, match=f"--weights {other} .* does not fit MobileNetV2"):
        backbone.load_weights_on_driver(str(other), 32, "tflite", storage)


def test_a_later_job_in_the_same_worker_uses_its_own_model(monkeypatch):
    # Python workers outlive a job; the worker's registry object for a collected broadcast is
    # freed, and CPython gives the next job's broadcast the same address at once.
    class Broadcast:  # what a worker's broadcast registry holds
        def __init__(self, value: str):
            self.value = value

    def run_task(broadcast: Broadcast) -> None:
        list(featurize_worker.featurize_partition(iter([]), broadcast, "tflite", 32, None))

    built = []
    monkeypatch.setattr(
        featurize_worker, "make_backbone", lambda value, *_: built.append(value) or 1
    )
    monkeypatch.setattr(featurize_worker, "_BACKBONE", None)
    first_job = Broadcast("job 1's model")
    run_task(first_job)
    del first_job  # the driver dropped it: freed, unless the worker's cache still holds it
    second_job = Broadcast("job 2's model")
    run_task(second_job)
    run_task(second_job)  # the tasks of one job build the model once
    assert built == ["job 1's model", "job 2's model"]
