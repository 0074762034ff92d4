"""Decoding a photo into the model's input: runs in the Python workers, pure functions.

Pillow decodes whatever a photo's bytes are (not what its extension says), refuses decompression
bombs from the header, and JPEG's DCT scaling decodes a 200 Mpx photo at a fraction of its size.
"""

from __future__ import annotations

import io
import re

import numpy as np

# What the workers decode, whatever the extension says (Pillow's format names; JPEG includes
# phones' multi-picture MPO). Pillow opens more, but a photo is one of these, and some others
# run external programs (EPS: Ghostscript).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF")
# Decompression bombs are refused from the header, before decoding. An image decoded at full
# size may have this many pixels (160 MB as RGBA in a Python worker; a 20000x20000 PNG would
# need 1.6 GB) ...
MAX_IMAGE_PIXELS = 40_000_000
# ... and a JPEG this many: it is decoded at 1/2, 1/4 or 1/8 of its size (JPEG's DCT scaling),
# so a 200 Mpx phone photo takes 3 Mpx of memory ...
MAX_JPEG_PIXELS = 250_000_000
# ... keeping at least this many times the model's input a side, so that the bilinear resize
# still averages several decoded pixels per output pixel: 4 keeps the pixels within 0.2 levels
# of a full decode's (1 gave 1.8 levels on a 12 Mpx photo full of detail), for the same time.
DECODE_OVERSAMPLING = 4


def decode_image(content: bytes, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bytes of an image -> float32 array (size, size, 3) in MobileNetV2's [-1, 1] range.

    With `out` (a float32 (size, size, 3) array) the pixels are written there, so a batch is
    decoded in place rather than allocated image by image and stacked.

    Any of IMAGE_FORMATS, any mode, is brought to 8-bit RGB: 16-bit and 32-bit greyscale are
    rescaled (not clipped), transparency is composited on white (the Fruits-360 background),
    CMYK and palettes are converted, and EXIF orientation is applied so a rotated phone photo is
    seen upright. A large JPEG is decoded at reduced scale first, then resized like any image.
    Raises ValueError (or PIL's own errors) on anything that is not a readable image.
    """
    from PIL import Image, ImageOps

    if not content:
        raise ValueError("empty file")
    # Pillow's own bomb check (over 179 Mpx) would refuse 200 Mpx photos: ours is below.
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(io.BytesIO(content), formats=IMAGE_FORMATS) as image:
        prepare_decoding(image, size)  # from the header, nothing decoded yet
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        rgb = _to_rgb(image)
    rgb = rgb.resize((size, size), Image.BILINEAR)
    if out is None:
        out = np.empty((size, size, 3), np.float32)
    # keras.applications.mobilenet_v2.preprocess_input, without temporaries
    np.divide(np.asarray(rgb), np.float32(127.5), out=out, dtype=np.float32)
    return np.subtract(out, np.float32(1.0), out=out)


def prepare_decoding(image, size: int) -> None:
    """Refuse a decompression bomb, and have a large JPEG decoded at 1/2, 1/4 or 1/8 scale
    (Pillow's `draft`: libjpeg's DCT scaling) while keeping DECODE_OVERSAMPLING x `size` a side.

    Decoding a 200 Mpx photo at 1/8 takes 9 MB of RGB instead of 600 MB, and 0.4 s instead of
    12 s; the bilinear resize to `size` then averages over the same area of the picture.
    """
    width, height = image.size
    jpeg = image.format in ("JPEG", "MPO")
    limit = MAX_JPEG_PIXELS if jpeg else MAX_IMAGE_PIXELS
    if width * height > limit:
        raise ValueError(
            f"image too large: {width}x{height} pixels exceeds {limit} for {image.format} "
            "(possible decompression bomb)"
        )
    keep = DECODE_OVERSAMPLING * size
    if jpeg and min(width, height) >= 2 * keep:
        image.draft(None, (keep, keep))
    if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:  # a JPEG too narrow to scale down
        raise ValueError(
            f"image too large: {width}x{height} JPEG decodes to {image.size[0]}x{image.size[1]} "
            f"pixels at the smallest scale that keeps {keep} a side, over {MAX_IMAGE_PIXELS} "
            "(possible decompression bomb)"
        )


def _to_rgb(image):
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # PIL's convert() clips wide and float modes at 255: rescale to 8 bits instead.
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(wide.max()), 1.0)
        image = Image.fromarray(np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


# ISO media brands of HEIF photos (iPhones save HEIC): Pillow has no decoder for them.
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1"}


def describe_error(error: Exception, content: bytes = b"") -> str:
    """A short reason for the quarantine, the same on every run (no object addresses)."""
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        if content[4:8] == b"ftyp" and content[8:12] in HEIF_BRANDS:
            return "UnidentifiedImageError: a HEIC/HEIF photo, not supported: convert it to JPEG"
        return "UnidentifiedImageError: not a supported image (" + ", ".join(IMAGE_FORMATS) + ")"
    message = re.sub(r" at 0x[0-9a-fA-F]+", "", str(error))
    return f"{type(error).__name__}: {message}"[:500]
