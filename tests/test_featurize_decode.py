"""Image decoding: every mode becomes the same RGB picture; anything unreadable raises."""

import io

import numpy as np
import pytest
from PIL import Image

from featurize import MAX_IMAGE_PIXELS, decode_image, path_as_spark_shows_it

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


@pytest.mark.parametrize(
    ("listed", "shown"),
    [
        (
            "file:///data/Training/Apple%20Red/zero%20bytes.jpg",
            "file:/data/Training/Apple Red/zero bytes.jpg",
        ),
        ("s3://lake/in/Test/Kiwi/a%2Bb.jpg", "s3://lake/in/Test/Kiwi/a+b.jpg"),
        ("s3://lake/in/Test/Kiwi/a+b.jpg", "s3://lake/in/Test/Kiwi/a+b.jpg"),
    ],
)
def test_listed_uris_match_the_path_column(listed, shown):
    assert path_as_spark_shows_it(listed) == shown
