"""featurize.py end to end on real Fruits-360 photos and the pretrained MobileNetV2 backbone."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import backbone
from benchmarks.keras_reference import cosine_rows, keras_features
from spark_submit import spark_submit

pytestmark = pytest.mark.spark

GUARD = Path(__file__).parent / "worker_guard"
CLASSES = 2  # first N classes of each split folder: ~160 real photos, enough to be telling


def broken_files() -> dict[str, bytes]:
    """Relative path -> bytes of inputs that must land in quarantine, not crash the job."""
    jpeg = io.BytesIO()
    Image.effect_noise((120, 120), 50).convert("RGB").save(jpeg, "JPEG")
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")
    return {
        "Training/Broken/zero bytes.jpg": b"",
        "Training/Broken/truncated.jpg": jpeg.getvalue()[:800],
        "Test/Broken/page.jpeg": b"<!doctype html><html><body>404</body></html>",
        "Test/Broken/bomb.png": bomb.getvalue(),
    }


def odd_but_readable_files() -> dict[str, bytes]:
    """Relative path -> bytes of unusual but valid photos: each must be featurized."""

    def encoded(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    photo = Image.effect_noise((90, 70), 40).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated phone photo
    wide = Image.fromarray((np.arange(90 * 70, dtype=np.uint16) * 9).reshape(70, 90))
    return {
        "Training/Odd/alpha.png": encoded(photo.convert("RGBA"), "PNG"),
        "Training/Odd/palette.png": encoded(photo.convert("P"), "PNG"),
        "Training/Odd/grey.jpg": encoded(photo.convert("L"), "JPEG"),
        "Training/Odd/cmyk.jpg": encoded(photo.convert("CMYK"), "JPEG"),
        "Test/Odd/sixteen-bit.png": encoded(wide, "PNG"),
        "Test/Odd/rotated.JPG": encoded(photo, "JPEG", exif=exif),
        "Test/Odd/pêche mûre n°1.jpeg": encoded(photo, "JPEG"),
    }


def copy_sample(sample_dir: Path, target: Path, classes: int) -> list[Path]:
    copied = []
    for split in ("Training", "Test"):
        for folder in sorted((sample_dir / split).iterdir())[:classes]:
            shutil.copytree(folder, target / split / folder.name)
            copied += sorted((target / split / folder.name).glob("*.jpg"))
    return copied


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_dir, pretrained_weights):
    root = tmp_path_factory.mktemp("featurize")
    good = copy_sample(sample_dir, root / "in", CLASSES)
    for relative, content in {**broken_files(), **odd_but_readable_files()}.items():
        (root / "in" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "in" / relative).write_bytes(content)
    (root / "in" / "Training" / "README.txt").write_text("not an image: never read")
    guard_log = root / "worker_guard.log"
    result = spark_submit(
        "featurize",
        *("--input", str(root / "in"), "--output", str(root / "out" / "features")),
        *("--quarantine", str(root / "out" / "quarantine")),
        *("--weights", str(pretrained_weights)),
        conf={
            "spark.executorEnv.PYTHONPATH": str(GUARD),
            "spark.executorEnv.FRUITS_WORKER_GUARD": str(guard_log),
        },
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return root, good, guard_log


def read_parquet(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file:"))


def test_features_equal_a_plain_keras_reference(run, pretrained_weights):
    root, good, _ = run
    features = read_parquet(root / "out" / "features")
    odd = [root / "in" / relative for relative in odd_but_readable_files()]
    assert sorted(local_path(p) for p in features["path"]) == sorted(good + odd)

    by_path = {local_path(p): np.asarray(v) for p, v in zip(features["path"], features["features"])}
    ours = np.stack([by_path[p] for p in good])
    reference = keras_features(good, pretrained_weights)
    assert ours.shape == (len(good), 1280) and ours.dtype == np.float32
    cosine = cosine_rows(ours, reference)
    assert cosine.min() >= 0.9999, f"worst cosine {cosine.min():.6f}"


def test_labels_and_splits_come_from_the_folders(run):
    root, _, _ = run
    features = read_parquet(root / "out" / "features")
    for uri, label, split in zip(features["path"], features["label"], features["split"]):
        path = local_path(uri)
        assert label == path.parent.name
        assert split == path.parent.parent.name
    assert set(features["split"]) == {"Training", "Test"}


def test_broken_files_are_quarantined_with_a_reason(run):
    root, _, _ = run
    quarantine = read_parquet(root / "out" / "quarantine")
    reasons = {local_path(p).name: e for p, e in zip(quarantine["path"], quarantine["error"])}
    assert set(reasons) == {Path(r).name for r in broken_files()}
    assert "empty file" in reasons["zero bytes.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "broken" in reasons["truncated.jpg"]
    assert "not a supported image" in reasons["page.jpeg"]
    assert "decompression bomb" in reasons["bomb.png"]


def test_manifest_counts_and_weights_are_exact(run, pretrained_weights):
    root, good, _ = run
    manifest = json.loads((root / "out" / "features" / "_manifest.json").read_text())
    readable = len(good) + len(odd_but_readable_files())
    assert manifest["counts"] == {
        "read": readable + len(broken_files()),
        "featurized": readable,
        "quarantined": len(broken_files()),
    }
    assert (
        manifest["weights"]["sha256"] == hashlib.sha256(pretrained_weights.read_bytes()).hexdigest()
    )
    assert manifest["weights"]["source"].endswith(pretrained_weights.name)
    assert manifest["weights"]["format"] == backbone.KERAS3_WEIGHTS  # PROVENANCE.md: Keras 3's
    assert manifest["image_size"] == 224
    assert {"spark", "tensorflow", "python"} <= set(manifest["versions"])


def test_features_are_written_zstd_without_a_dictionary(run):
    """The writer options reach Parquet: a misspelt option key would be ignored silently."""
    import pyarrow.parquet as pq

    root, _, _ = run
    (part, *_) = sorted((root / "out" / "features").glob("part-*.parquet"))
    metadata = pq.ParquetFile(part).metadata
    columns = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i)
        for i in range(metadata.num_columns)
    }
    features = columns["features.list.element"]
    assert features.compression == "ZSTD"
    assert not [e for e in features.encodings if "DICTIONARY" in e]
    assert [e for e in columns["label"].encodings if "DICTIONARY" in e]  # others keep theirs


def test_workers_never_load_weights_themselves(run):
    """The guard was armed in the Python workers and nothing tried to load weights there."""
    _, _, guard_log = run
    lines = guard_log.read_text().splitlines()
    assert any(line.endswith("ARMED") for line in lines), "guard never loaded in a worker"
    assert not [line for line in lines if "BLOCKED" in line]


def test_the_guard_catches_a_worker_that_loads_weights(tmp_path, pretrained_weights):
    """Control for the test above: the same guard refuses Keras loading the weights file."""
    log = tmp_path / "guard.log"
    probe = (
        "import keras\n"
        "m = keras.applications.MobileNetV2(include_top=False, pooling='avg', weights=None)\n"
        f"m.load_weights({str(pretrained_weights)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(GUARD), "FRUITS_WORKER_GUARD": str(log), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "worker_guard" in result.stderr
    assert "BLOCKED open HDF5 file" in log.read_text()


def test_pca_on_these_real_features_equals_numpys(run, spark, tmp_path):
    """Spark ML PCA on real MobileNetV2 features (dead channels and all), as one night, against
    an SVD of the centred Training rows: same explained variance, same components up to sign,
    every row projected and centred by the Training mean."""
    import pca

    root, _, _ = run
    night = tmp_path / "features" / "ingest_date=2026-11-25"
    shutil.copytree(root / "out" / "features", night)
    vectors = tmp_path / "vectors" / "ingest_date=2026-11-25"
    pca.main(
        ["--features", str(tmp_path / "features"), "--until", "2026-11-25"]
        + ["--output", str(tmp_path / "pca"), "--vectors", str(vectors), "--k", "5"]
    )
    features = read_parquet(root / "out" / "features")
    projected = read_parquet(vectors).set_index("path").loc[features["path"]]
    matrix = np.stack(features["features"]).astype(np.float64)
    training = matrix[(features["split"] == "Training").to_numpy()]
    mean = training.mean(axis=0)
    _, singular, components = np.linalg.svd(training - mean, full_matrices=False)
    variance = singular**2 / (singular**2).sum()

    report = json.loads((tmp_path / "pca" / "report.json").read_text())
    assert report["rows"] == {"fitted": len(training), "projected": len(matrix)}
    np.testing.assert_allclose(report["explained_variance"][:5], variance[:5], rtol=1e-4)
    ours = np.stack(projected["pca_features"]).astype(np.float64)
    reference = (matrix - mean) @ components[:5].T
    np.testing.assert_allclose(np.abs(ours), np.abs(reference), atol=1e-3 * np.abs(reference).max())
