"""The job checks its own invariant: every image its listing found is featurized or quarantined.
Faults are injected in-process: a platform that cannot read a name, a reader that loses one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

import featurize
import image_reading

pytestmark = pytest.mark.spark


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((60, 60), 40).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def run(input_dir: Path, output: Path, weights: Path) -> dict:
    featurize.main(
        ["--input", str(input_dir), "--output", str(output), "--weights", str(weights)]
        + ["--image-size", "32"]
    )
    return json.loads((output / "_manifest.json").read_text())


def test_a_name_the_platform_cannot_read_is_quarantined_and_the_run_goes_on(
    spark, tmp_path, random_weights, monkeypatch
):
    """Hadoop's checksummed local file system cannot open `12:30:00.jpg` (it cannot name the
    `.12:30:00.jpg.crc` beside it): the job's own reads avoid it, so it stands in here for a
    platform that cannot read some name. Spark skips the file; the job quarantines it with the
    error the driver gets reading it."""
    options = {k: v for k, v in image_reading.IMAGE_READ_OPTIONS.items() if not k.startswith("fs.")}
    monkeypatch.setattr(image_reading, "IMAGE_READ_OPTIONS", options)
    (tmp_path / "in" / "Kiwi").mkdir(parents=True)
    for name in ("12:30:00.jpg", "plain.jpg"):
        (tmp_path / "in" / "Kiwi" / name).write_bytes(photo())

    manifest = run(tmp_path / "in", tmp_path / "out", random_weights)

    assert manifest["counts"] == {"read": 2, "featurized": 1, "quarantined": 1}
    (row,) = pq.read_table(tmp_path / "out_quarantine").to_pylist()
    assert row["path"].endswith("/Kiwi/12:30:00.jpg")
    assert "cannot be read" in row["error"] and "Relative path in absolute URI" in row["error"]


def test_an_image_lost_on_the_way_fails_the_run_naming_it(
    spark, tmp_path, random_weights, monkeypatch
):
    """A reader that silently drops a readable photo (as Spark's listing did with `_DSC` names)
    is caught by the job's own count, and the photo is named."""
    (tmp_path / "in" / "Kiwi").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "lost one.jpg"):
        (tmp_path / "in" / "Kiwi" / name).write_bytes(photo())
    read_images = image_reading.read_images

    def losing_one(*args, **kwargs):
        images, unreadable = read_images(*args, **kwargs)
        return images.where(~images.path.endswith("lost one.jpg")), unreadable

    monkeypatch.setattr(featurize, "read_images", losing_one)
    with pytest.raises(SystemExit, match=r"(?s)1 listed images were neither.*Kiwi/lost one.jpg"):
        run(tmp_path / "in", tmp_path / "out", random_weights)
    assert not (tmp_path / "out" / "_manifest.json").exists()  # not marked complete
