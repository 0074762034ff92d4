"""What a phone, a camera, an app or a person may upload under an image name: other formats,
EXIF orientations, very large photos, and the decompression bombs that must still be refused."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from decoding import (
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    MAX_JPEG_PIXELS,
    decode_image,
    describe_error,
    prepare_decoding,
)

pytestmark = pytest.mark.unit

SIZE = 32
HEIC_HEADER = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"  # an iPhone photo's first box


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def quadrants(width: int = 48, height: int = 32) -> Image.Image:
    """Four flat colours, so that any rotation or mirror moves them somewhere else."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    for box, colour in (
        ((0, 0, half_w, half_h), (220, 30, 30)),
        ((half_w, 0, width, half_h), (30, 200, 30)),
        ((0, half_h, half_w, height), (30, 30, 230)),
        ((half_w, half_h, width, height), (240, 220, 20)),
    ):
        image.paste(colour, box)
    return image


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims another size: a bomb's header, or a huge
    photo's, without its megabytes."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (90, 120, 40)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def png_16bit_rgb(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG, written by hand (Pillow cannot save one)."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("fmt", "save_args"),
    [
        ("GIF", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        ("BMP", {}),
        ("AVIF", {"quality": 100}),
        ("MPO", {"save_all": True, "append_images": [quadrants()]}),  # phones' multi-picture
    ],
)
def test_other_formats_under_an_image_name_are_decoded(fmt, save_args):
    picture = quadrants()
    decoded = decode_image(encode(picture, fmt, **save_args), SIZE)
    reference = decode_image(encode(picture, "PNG"), SIZE)
    tolerance = 0.2 if fmt in ("AVIF", "MPO") else 0.02  # lossy codecs
    assert np.abs(decoded - reference).mean() < tolerance


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a supported image"),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "not a supported image"),
        (HEIC_HEADER + bytes(64), "HEIC/HEIF photo"),
        # macOS AppleDouble metadata saved beside a photo as ._photo.jpg
        (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64), "not a supported"),
        (bytes(range(256)) * 8, "not a supported image"),
    ],
)
def test_what_is_not_a_supported_image_gets_a_reason(content, reason):
    with pytest.raises(Exception) as raised:
        decode_image(content, SIZE)
    assert reason in describe_error(raised.value, content)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "JPEG2000", "TGA"])
def test_formats_pillow_reads_but_a_photo_never_is_are_refused(fmt):
    """Pillow would open these; the job only decodes IMAGE_FORMATS."""
    assert fmt not in IMAGE_FORMATS
    with pytest.raises(Exception, match="cannot identify image file"):
        decode_image(encode(quadrants(), fmt), SIZE)


# What a viewer must do to the stored picture to show it upright, per the EXIF specification
# (tag 0x0112), written with numpy: the stored picture is the upright one with that undone.
STORED_FROM_UPRIGHT = {
    1: lambda u: u,
    2: np.fliplr,  # mirrored
    3: lambda u: np.rot90(u, 2),
    4: np.flipud,
    5: lambda u: np.fliplr(np.rot90(u, -1)),  # "mirror, then rotate 270 CW" undone
    6: lambda u: np.rot90(u, 1),  # "rotate 90 CW to view": stored turned 90 CCW
    7: lambda u: np.fliplr(np.rot90(u, 1)),  # "mirror, then rotate 90 CW" undone
    8: lambda u: np.rot90(u, -1),  # "rotate 270 CW to view"
}


@pytest.mark.parametrize("orientation", sorted(STORED_FROM_UPRIGHT))
def test_every_exif_orientation_is_shown_upright(orientation):
    upright = np.asarray(quadrants())
    stored = Image.fromarray(np.ascontiguousarray(STORED_FROM_UPRIGHT[orientation](upright)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(stored, "PNG", exif=exif), SIZE)  # lossless: exact pixels
    np.testing.assert_array_equal(decoded, decode_image(encode(quadrants(), "PNG"), SIZE))


@pytest.mark.parametrize("orientation", [0, 9, 255, 65535])
def test_an_invalid_exif_orientation_leaves_the_picture_as_stored(orientation):
    stored = quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(stored, "PNG", exif=exif), SIZE)
    np.testing.assert_array_equal(decoded, decode_image(encode(stored, "PNG"), SIZE))


def test_garbled_exif_is_ignored_not_fatal():
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera maker " * 20
    data = bytearray(encode(quadrants(), "JPEG", exif=exif, quality=95))
    start = data.index(b"Exif\x00\x00") + 6
    rng = np.random.default_rng(3)
    data[start + 8 : start + 200] = rng.integers(0, 256, 192, dtype=np.uint8).tobytes()
    decoded = decode_image(bytes(data), SIZE)
    # The orientation is unreadable: the picture as stored, the very pixels of the same JPEG
    # without EXIF (the compressed picture is the same bytes).
    np.testing.assert_array_equal(
        decoded, decode_image(encode(quadrants(), "JPEG", quality=95), SIZE)
    )


COLOURS = np.array([(220, 30, 30), (30, 200, 30), (30, 30, 230), (240, 220, 20)], np.float64)
LUMA = COLOURS @ [0.299, 0.587, 0.114]  # ITU-R 601-2, what a greyscale conversion keeps


def quadrant_means(decoded: np.ndarray) -> np.ndarray:
    """The mean colour (0-255) inside each quadrant of a decoded quadrants() picture, away from
    the edges a resize blends."""
    pixels = (decoded.astype(np.float64) + 1.0) * 127.5
    half, m = SIZE // 2, 3
    boxes = [(0, 0), (0, half), (half, 0), (half, half)]  # (row, column): as COLOURS
    return np.array(
        [pixels[r + m : r + half - m, c + m : c + half - m].mean((0, 1)) for r, c in boxes]
    )


def wide_grey(mode: str) -> Image.Image:
    """quadrants() as 32-bit greyscale with values far above 255, as a scientific camera or a
    depth map writes them: a clipping conversion would make it all white."""
    luma = np.asarray(quadrants().convert("F"), np.float64) * 1000
    return Image.fromarray(luma.astype(np.float32 if mode == "F" else np.int32), mode)


GREY_RESCALED = np.repeat(LUMA[:, None] / LUMA.max() * 255, 3, 1)  # rescaled to the brightest
GREY = np.repeat(LUMA[:, None], 3, 1)


@pytest.mark.parametrize(
    ("mode", "fmt", "expected", "tolerance"),
    [
        ("LA", "PNG", GREY, 1.5),  # opaque: the grey itself, nothing of the white background
        ("LAB", "TIFF", COLOURS, 10),  # CIELAB back to sRGB (Pillow's round trip: within 9)
        ("F", "TIFF", GREY_RESCALED, 1.5),
        ("I", "TIFF", GREY_RESCALED, 1.5),
        ("1", "PNG", GREY, 40),  # dithered black and white: each area's share of white
    ],
)
def test_rarer_modes_become_rgb(mode, fmt, expected, tolerance):
    image = wide_grey(mode) if mode in ("F", "I") else quadrants().convert(mode)
    decoded = decode_image(encode(image, fmt), SIZE)
    assert decoded.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(quadrant_means(decoded), expected, atol=tolerance)


def test_a_48_bit_png_keeps_its_colours():
    colour = np.array([50000, 20000, 65535], np.uint16)
    decoded = decode_image(png_16bit_rgb(np.tile(colour, (20, 30, 1))), SIZE)
    np.testing.assert_allclose((decoded[5, 5] + 1) * 127.5, colour / 65535 * 255, atol=1.01)


def test_a_48_megapixel_phone_photo_is_decoded_at_an_eighth_of_its_size():
    side = 2 * SIZE  # 4 x 64 = 256 a side kept: 8000x6000 / 8
    photo = Image.linear_gradient("L").resize((8000, 6000)).convert("RGB")
    content = encode(photo, "JPEG", quality=90)
    with Image.open(io.BytesIO(content)) as image:
        prepare_decoding(image, side)
        assert image.size == (1000, 750)  # DCT scaling: nothing of 8000x6000 allocated
    ours = decode_image(content, side)
    full = np.asarray(photo.resize((side, side), Image.BILINEAR), np.float32) / 127.5 - 1
    assert np.abs(ours - full).mean() < 0.01  # a smooth picture: all but the same pixels


def test_a_multi_picture_phone_jpeg_is_scaled_like_any_jpeg():
    mpo = encode(quadrants(1000, 800), "MPO", save_all=True, append_images=[quadrants()])
    with Image.open(io.BytesIO(mpo)) as image:
        assert image.format == "MPO"
        prepare_decoding(image, 32)  # 4 x 32 a side kept: a quarter of 1000x800
        assert image.size == (250, 200)


def test_small_photos_are_decoded_at_full_size():
    for side in (100, 1791):  # under 2 x 4 x 224: no scale keeps 896 a side
        with Image.open(io.BytesIO(jpeg_claiming(side, side))) as image:
            prepare_decoding(image, 224)
            assert image.size == (side, side)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (16320, 12240),  # a 200 Mpx phone photo (Samsung's HP2 sensor)
        (15811, 15811),  # just under the limit
    ],
)
def test_a_jpeg_up_to_the_limit_is_accepted_and_scaled(width, height):
    assert width * height <= MAX_JPEG_PIXELS
    with Image.open(io.BytesIO(jpeg_claiming(width, height))) as image:
        prepare_decoding(image, 224)
        assert image.size == ((width + 7) // 8, (height + 7) // 8)


@pytest.mark.parametrize(
    ("content", "size"),
    [
        (jpeg_claiming(60000, 60000), 224),  # a JPEG header claiming 3.6 gigapixels
        (jpeg_claiming(15812, 15812), 224),  # just over the limit
        (jpeg_claiming(65000, 1500), 1024),  # too narrow to scale down at --image-size 1024
        (encode(Image.new("1", (20000, 20000)), "PNG"), 224),  # 48 KB on disk
        (encode(Image.new("1", (6400, 6400)), "GIF"), 224),  # 41 Mpx: any non-JPEG
    ],
)
def test_decompression_bombs_are_refused_before_decoding(content, size):
    assert len(content) < 1_000_000
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_image(content, size)


def test_the_full_size_limit_is_the_documented_one():
    side = int(MAX_IMAGE_PIXELS**0.5)
    assert decode_image(encode(Image.new("1", (side, side)), "PNG"), SIZE).shape == (SIZE, SIZE, 3)
