"""Anything in the landing zone: real photos mixed with every kind of object a phone app, a
camera or a person can upload under an image name. Each has one exact expected outcome, and the
job runs as users run it (spark-submit), in local mode and with separate executor JVMs."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from spark_submit import spark_submit
from test_featurize_formats import (
    HEIC_HEADER,
    STORED_FROM_UPRIGHT,
    jpeg_claiming,
    png_16bit_rgb,
    quadrants,
)

pytestmark = pytest.mark.spark

FEATURIZED = "featurized"
HIDDEN = "hidden name"
NOT_SUPPORTED = "not a supported image"
BOMB = "decompression bomb"


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def with_orientation(orientation: int, maker: str = "") -> bytes:
    upright = np.asarray(quadrants(90, 60))
    stored = np.ascontiguousarray(STORED_FROM_UPRIGHT.get(orientation, lambda u: u)(upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = maker
    return encoded(Image.fromarray(stored), "JPEG", exif=exif)


def landing_zone(root: Path, sample_dir: Path) -> dict[str, str]:
    """Writes the corpus under root; relative path -> "featurized", or a fragment of the
    quarantine reason it must get."""
    kiwi = sorted((sample_dir / "Training").iterdir())[0]
    real = [path.read_bytes() for path in sorted(kiwi.glob("*.jpg"))[:3]]
    jpeg = real[0]
    expected: dict[str, str] = {}

    def put(relative: str, content: bytes, outcome: str = FEATURIZED) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
        expected[relative] = outcome

    # Real photos, and names: any UTF-8, glob and URI characters, any extension case.
    for number, content in enumerate(real):
        put(f"Training/Kiwi/real {number}.jpg", content)
    for name in [
        "12:30:00.jpg", "sp ace.jpg", "q?.jpg", "h#.jpg", "pc%20.jpg", "pct%.jpg", "br[1].jpg",
        "cb{a,b}.jpg", "st*.jpg", "back\\slash.jpg", "apo'.jpg", "日本の桃.jpg", "🍎.png",
        "tab\tname.jpg", "new\nline.jpg", "a=b.jpg", "_a=b.jpg", "x.JpEg", "UPPER.PNG",
    ]:  # fmt: skip
        put(f"Names/{name}", jpeg)
    # Names Spark's file sources never read (quarantined), and hidden folders (read).
    put("Names/_DSC0001.JPG", jpeg, HIDDEN)  # cameras' Adobe RGB photos
    put("Names/.hidden.jpg", jpeg, HIDDEN)
    put("Names/._real 0.jpg", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" + bytes(60), HIDDEN)
    put("Names/.jpg", jpeg, HIDDEN)
    put("_incoming/inside.jpg", jpeg)
    put(".thumbnails/12:00.jpg", jpeg)
    put(".thumbnails/st*r [1].jpg", jpeg)
    put(".thumbnails/12:00 st*r.jpg", jpeg, "can only be given to Spark as a pattern")
    put("_incoming/.deeper/deep.png", encoded(quadrants(), "PNG"))
    # Folders and links.
    put("dir.jpg/inner.jpg", jpeg)  # a folder named like an image: its files are read
    (root / "empty.jpg").mkdir()  # an empty one is no object at all
    (root / "Links").mkdir()
    (root / "Links" / "link.jpg").symlink_to(root / "Training/Kiwi/real 0.jpg")
    expected["Links/link.jpg"] = FEATURIZED
    (root / "Links" / "broken.jpg").symlink_to(root / "nowhere.jpg")
    expected["Links/broken.jpg"] = "broken symbolic link"
    # Not images at all, truncated, empty, too large, other formats under an image name.
    put("Content/zero.jpg", b"", "empty file")
    put("Content/truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    put("Content/garbled.jpg", np.random.default_rng(1).bytes(3000), NOT_SUPPORTED)
    put("Content/page.jpeg", b"<!doctype html><html><body>404</body></html>", NOT_SUPPORTED)
    put("Content/iphone.jpg", HEIC_HEADER + bytes(99), "HEIC")
    put("Content/eps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n", NOT_SUPPORTED)
    put("Content/pdf.png", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", NOT_SUPPORTED)
    (root / "Content" / "huge.jpg").write_bytes(b"")  # sparse: 300 MB on paper, none on disk
    os.truncate(root / "Content" / "huge.jpg", 300 * 2**20)
    expected["Content/huge.jpg"] = "file too large"
    for fmt in ("GIF", "WEBP", "TIFF", "BMP", "AVIF"):
        put(f"Formats/{fmt.lower()}.jpg", encoded(quadrants(), fmt))
    # Every mode.
    picture = quadrants()
    put("Modes/cmyk.jpg", encoded(picture.convert("CMYK"), "JPEG"))
    put("Modes/grey.jpg", encoded(picture.convert("L"), "JPEG"))
    put("Modes/palette.png", encoded(picture.convert("P"), "PNG"))
    put("Modes/palette transparent.png", encoded(picture.convert("P"), "PNG", transparency=0))
    put("Modes/alpha.png", encoded(picture.convert("RGBA"), "PNG"))
    put("Modes/grey alpha.png", encoded(picture.convert("LA"), "PNG"))
    put("Modes/bilevel.png", encoded(picture.convert("1"), "PNG"))
    sixteen = (np.arange(48 * 32, dtype=np.uint16) * 40).reshape(32, 48)
    put("Modes/16-bit grey.png", encoded(Image.fromarray(sixteen), "PNG"))
    put("Modes/16-bit rgb.png", png_16bit_rgb(np.dstack([sixteen] * 3)))
    # EXIF orientations, valid and not, and a garbled EXIF block.
    for orientation in [*range(1, 9), 0, 9, 65535]:
        put(f"Exif/orientation {orientation}.jpg", with_orientation(orientation))
    garbled = bytearray(with_orientation(6, maker="Camera maker " * 10))
    start = garbled.index(b"Exif\x00\x00") + 14  # inside the EXIF block, past its header
    garbled[start : start + 60] = bytes(range(140, 200))
    put("Exif/garbled.jpg", bytes(garbled))
    # Large photos and bombs.
    phone = Image.linear_gradient("L").resize((8000, 6000)).convert("RGB")
    put("Big/48 Mpx phone photo.jpg", encoded(phone, "JPEG", quality=85))
    put("Big/claims 60000x60000.jpg", jpeg_claiming(60000, 60000), BOMB)
    put("Big/bomb.png", encoded(Image.new("1", (20000, 20000)), "PNG"), BOMB)
    # Never listed: not named like an image.
    for name in ("notes.txt", "IMG_0001.HEIC", "photo.jpg.part", "jpg"):
        (root / "Other").mkdir(exist_ok=True)
        (root / "Other" / name).write_bytes(jpeg)
    return expected


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sample_dir) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("landing")
    return root, landing_zone(root / "in", sample_dir)


def rows_by_relative_path(table_path: Path, root: Path) -> dict[str, dict]:
    rows = pq.read_table(table_path).to_pylist()
    relative = {str(Path(row["path"].removeprefix("file:")).relative_to(root)): row for row in rows}
    assert len(relative) == len(rows)
    return relative


@pytest.mark.parametrize("master", ["local[2]", "local-cluster[2,1,2048]"])
def test_every_object_is_featurized_or_quarantined_with_its_reason(
    corpus, random_weights, tmp_path, master
):
    root, expected = corpus
    out = tmp_path / "out"
    result = spark_submit(
        "featurize",
        *("--input", str(root / "in"), "--output", str(out / "features")),
        *("--quarantine", str(out / "quarantine"), "--weights", str(random_weights)),
        *("--image-size", "32"),
        master=master,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    features = rows_by_relative_path(out / "features", root / "in")
    quarantine = rows_by_relative_path(out / "quarantine", root / "in")
    assert sorted(features) == sorted(k for k, outcome in expected.items() if outcome == FEATURIZED)
    reasons = {path: row["error"] for path, row in quarantine.items()}
    assert sorted(reasons) == sorted(k for k, outcome in expected.items() if outcome != FEATURIZED)
    wrong = {path: why for path, why in reasons.items() if expected[path] not in why}
    assert not wrong, wrong

    for relative, row in features.items():
        assert row["label"] == Path(relative).parent.name
        assert len(row["features"]) == 1280 and all(np.isfinite(row["features"]))
    manifest = json.loads((out / "features" / "_manifest.json").read_text())
    assert manifest["counts"] == {
        "read": len(expected),
        "featurized": len(features),
        "quarantined": len(quarantine),
    }
    summary = f"{len(features)} featurized -> {out / 'features'}, {len(quarantine)} quarantined"
    assert summary in result.stdout
