"""Image decoding and the Arrow batch function: every mode becomes the same RGB picture, anything
unreadable becomes an error row."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from accounting import quarantine_parquet
from backbone import FEATURE_SIZE
from decoding import MAX_IMAGE_PIXELS, decode_image
from featurize_worker import RESULT_SCHEMA, UnreadableImages, featurize_batch, split_errors

pytestmark = pytest.mark.unit

SIZE = 32


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def red_square(mode: str = "RGB") -> Image.Image:
    square = Image.new("RGB", (40, 40), (200, 30, 30))
    if mode == "P":  # an adaptive palette holds the exact colour (no dithering)
        return square.convert("P", palette=Image.Palette.ADAPTIVE)
    return square.convert(mode)


def to_pixels(decoded: np.ndarray) -> np.ndarray:
    return np.round((decoded + 1.0) * 127.5)


def test_rgb_jpeg_is_scaled_to_minus_one_one():
    decoded = decode_image(encode(red_square(), "PNG"), SIZE)
    assert decoded.shape == (SIZE, SIZE, 3) and decoded.dtype == np.float32
    assert np.allclose(to_pixels(decoded)[0, 0], [200, 30, 30])


@pytest.mark.parametrize("mode", ["L", "P", "CMYK"])
def test_other_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(red_square(mode), fmt), SIZE)
    assert decoded.shape == (SIZE, SIZE, 3)
    expected = np.asarray(red_square(mode).convert("RGB"))[0, 0]
    assert np.allclose(to_pixels(decoded)[5, 5], expected, atol=12)


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((10, 200, 10, 255), (0, 0, 20, 40))
    pixels = to_pixels(decode_image(encode(image, "PNG"), 40))
    assert np.allclose(pixels[20, 5], [10, 200, 10])
    assert np.allclose(pixels[20, 35], [255, 255, 255])


def test_sixteen_bit_greyscale_is_rescaled_not_clipped():
    grey = np.full((40, 40), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    pixels = to_pixels(decode_image(encode(Image.fromarray(grey), "PNG"), SIZE))
    assert np.allclose(pixels[5, 5], [128, 128, 128], atol=1)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (0, 0, 255))
    image.paste((255, 255, 0), (0, 0, 30, 30))  # yellow left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    pixels = to_pixels(decode_image(encode(image, "JPEG", exif=exif, quality=95), 60))
    # Upright, the picture is 30 wide and 60 tall with the yellow half on top.
    assert pixels[5, 30][0] > 200 and pixels[5, 30][2] < 60
    assert pixels[55, 30][2] > 200 and pixels[55, 30][0] < 60


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"<html><body>not a photo</body></html>", "cannot identify image"),
    ],
)
def test_unreadable_bytes_raise(content, reason):
    with pytest.raises(Exception, match=reason):
        decode_image(content, SIZE)


def test_truncated_jpeg_raises():
    whole = encode(Image.effect_noise((200, 200), 60).convert("RGB"), "JPEG")
    with pytest.raises(OSError, match="truncated|broken"):
        decode_image(whole[: len(whole) // 3], SIZE)


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    bomb = encode(Image.new("1", (side, side)), "PNG")  # tiny file, huge picture
    assert len(bomb) < 1_000_000
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_image(bomb, SIZE)


class RowSumBackbone:
    """Stands in for MobileNetV2: feature i of an image is i + the sum of its pixels."""

    def __init__(self, micro_batch: int = 1):
        self.micro_batch = micro_batch
        self.calls: list[int] = []  # images per call of predict

    def predict(self, images: np.ndarray) -> np.ndarray:
        assert len(images) <= self.micro_batch
        self.calls.append(len(images))
        sums = images.reshape(len(images), -1).sum(axis=1, dtype=np.float64)
        return (sums[:, None] + np.arange(FEATURE_SIZE)).astype(np.float32)


@pytest.mark.parametrize("micro_batch", [1, 2, 16])
def test_an_arrow_batch_keeps_rows_in_order_with_features_or_an_error(micro_batch):
    import pyarrow as pa

    photos = [red_square(), Image.new("RGB", (30, 50), (0, 90, 255)), red_square("L")]
    contents = [encode(photos[0], "PNG"), b"not an image", encode(photos[1], "PNG"), b""]
    contents.append(encode(photos[2], "JPEG"))
    paths = [f"file:/in/{n}.png" for n in range(len(contents))]
    batch = pa.RecordBatch.from_pydict({"path": paths, "content": contents})

    backbone = RowSumBackbone(micro_batch)
    result = featurize_batch(batch, backbone, SIZE)

    # The 3 readable images go to the model in full micro-batches, then the rest.
    full, rest = divmod(3, micro_batch)
    assert backbone.calls == [micro_batch] * full + ([rest] if rest else [])
    assert result.schema == RESULT_SCHEMA
    assert result.column("path").to_pylist() == paths
    errors = result.column("error").to_pylist()
    assert [e is None for e in errors] == [True, False, True, False, True]
    assert "not a supported image" in errors[1] and "empty file" in errors[3]
    features = result.column("features").to_pylist()
    assert [f is None for f in features] == [False, True, False, True, False]
    for row, content in ((0, contents[0]), (2, contents[2]), (4, contents[4])):
        expected = RowSumBackbone().predict(decode_image(content, SIZE)[np.newaxis])[0]
        np.testing.assert_array_equal(np.asarray(features[row], np.float32), expected)


def test_a_batch_with_nothing_readable_gives_only_errors():
    import pyarrow as pa

    batch = pa.RecordBatch.from_pydict({"path": ["a", "b"], "content": [b"x", b"y"]})
    backbone = RowSumBackbone(micro_batch=4)
    result = featurize_batch(batch, backbone, SIZE)
    assert backbone.calls == []
    assert result.column("features").to_pylist() == [None, None]
    assert all(result.column("error").to_pylist())


def test_decoding_into_a_buffer_gives_the_same_pixels():
    content = encode(red_square(), "PNG")
    buffer = np.full((SIZE, SIZE, 3), 7.0, np.float32)
    decode_image(content, SIZE, out=buffer)
    np.testing.assert_array_equal(buffer, decode_image(content, SIZE))


def test_only_featurized_rows_go_on_and_the_errors_are_kept_by_path():
    import pyarrow as pa

    contents = [encode(red_square(), "PNG"), b"not an image", b"", encode(red_square(), "JPEG")]
    paths = ["file:/in/a.png", "file:/in/b.png", "file:/in/c.png", "file:/in/d.jpg"]
    batch = pa.RecordBatch.from_pydict({"path": paths, "content": contents})

    featurized, errors = split_errors(featurize_batch(batch, RowSumBackbone(), SIZE))

    assert featurized.schema.names == ["path", "features"]
    assert featurized.column("path").to_pylist() == ["file:/in/a.png", "file:/in/d.jpg"]
    assert all(len(f) == FEATURE_SIZE for f in featurized.column("features").to_pylist())
    assert set(errors) == {"file:/in/b.png", "file:/in/c.png"}
    assert "empty file" in errors["file:/in/c.png"]


def test_a_task_reported_twice_counts_once():
    param = UnreadableImages()
    merged = param.zero({})
    for report in ({"a.jpg": "bad"}, {"b.jpg": "bad"}, {"a.jpg": "bad"}):  # a task re-run
        merged = param.addInPlace(merged, dict(report))
    assert merged == {"a.jpg": "bad", "b.jpg": "bad"}


def test_the_quarantine_file_has_every_error_sorted_by_path():
    unreadable = {"file:/in/b.jpg": "ValueError: empty file", "file:/in/a.png": "OSError: x"}
    table = pq.read_table(pa.BufferReader(quarantine_parquet(unreadable)))
    assert table.schema.names == ["path", "error"]
    assert table.to_pylist() == [
        {"path": "file:/in/a.png", "error": "OSError: x"},
        {"path": "file:/in/b.jpg", "error": "ValueError: empty file"},
    ]
    empty = pq.read_table(pa.BufferReader(quarantine_parquet({})))
    assert empty.num_rows == 0 and empty.schema.names == ["path", "error"]
