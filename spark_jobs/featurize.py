"""Featurize fruit photos with a pretrained MobileNetV2 on Spark.

    spark-submit spark_jobs/featurize.py --input URI --output URI
        [--weights imagenet|URI] [--quarantine URI] [--image-size 224] [--engine tflite|keras]
        [--model-cache URI]

Reads every object under --input whose name ends in .jpg/.jpeg/.png (any case; Spark `binaryFile`),
labels each image by its parent folder, and writes one row per image to Parquet at --output:
`path, label, split, features` (1280 float32, MobileNetV2 include_top=False + average pooling).
Images that cannot be read go to --quarantine as `path, error`. The job lists --input itself, by
the file system's API, and checks at the end that every image it listed is either featurized or
quarantined: it fails naming any that is neither (and when nothing at all could be read).
`<output>/_manifest.json` is written last: its presence marks the output as complete, and it
records the counts, the weights used (source and sha256) and the versions.

How the model reaches the executors: the driver loads the weights once, builds the model and
broadcasts it, serialised, to the executors; each Python worker deserialises it once and reuses it
for every batch of every task it runs (Spark reuses Python workers). With `--engine tflite` (the
default) what is broadcast is a TensorFlow Lite flatbuffer converted on the driver from the very
same Keras model, run with XNNPACK and one thread per Spark task: about twice Keras' speed on CPU
for the same float32 features. With `--engine keras` the weight arrays themselves are broadcast.
The workers get and return Arrow batches (`mapInArrow`): the 1,280 features of a batch leave as
one float32 buffer, not as pandas objects converted row by row.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import io
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import partial, reduce
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from py4j.protocol import Py4JJavaError
from pyspark import AccumulatorParam
from pyspark.errors import AnalysisException, IllegalArgumentException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

FEATURE_SIZE = 1280
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
SPLIT_FOLDERS = ("Training", "Test")
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
# No photo is larger (a 200 Mpx JPEG is 20 to 60 MB); a Python worker holds one at a time.
MAX_FILE_BYTES = 256 * 2**20
# Photos' bytes per Spark partition, hence at most per Arrow batch in a Python worker (one larger
# photo gets a partition of its own). Spark 3.5 bounds Arrow batches by rows only: 64 rows of
# 200 Mpx photos would be 2 to 4 GB.
MAX_PARTITION_BYTES = 64 * 2**20
# Images per call of the Keras engine: small enough to stay in cache.
KERAS_MICRO_BATCH = 16
# Rows per Arrow batch handed to a Python worker.
ARROW_BATCH_ROWS = 64

# What featurize_batch returns for each image (its features or an error), and the part of it the
# workers give Spark: the featurized images (the others reach the driver via UnreadableImages).
RESULT_SCHEMA = pa.schema(
    [("path", pa.string()), ("features", pa.list_(pa.float32())), ("error", pa.string())]
)
FEATURIZED_DDL = "path string, features array<float>"


# --------------------------------------------------------------------------------------------
# Image decoding (runs on the executors; pure functions, unit-tested without Spark)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The model: built once on the driver, shipped serialised, rebuilt once per Python worker
# --------------------------------------------------------------------------------------------


# Keras 3 reads each of its two HDF5 weights layouts with its own loader, chosen by the file's
# name; a weights file is recognised by what is in it and saved under the name its loader needs.
KERAS3_WEIGHTS = "keras3 .weights.h5"  # model.save_weights() of Keras 3
LEGACY_WEIGHTS = "keras legacy .h5"  # Keras 2's save_weights(), and Keras' own ImageNet file
LOADER_FILE_NAMES = {KERAS3_WEIGHTS: "backbone.weights.h5", LEGACY_WEIGHTS: "backbone.h5"}


@dataclass(frozen=True)
class LoadedWeights:
    source: str  # "imagenet" or the URI the weights were read from
    sha256: str
    format: str  # KERAS3_WEIGHTS or LEGACY_WEIGHTS
    model_bytes: bytes  # what is broadcast: a TFLite flatbuffer or the pickled weight arrays
    engine: str
    compiled_from: str  # "weights" (converted in this run) or the model-cache URI it came from


@dataclass(frozen=True)
class Storage:
    """File access for the driver (jobio's Hadoop FileSystem calls, or plain files in tests)."""

    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    exists: Callable[[str], bool]


def build_keras_backbone(image_size: int, weights: str | None = None):
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3),
        alpha=1.0,
        include_top=False,
        pooling="avg",
        weights=weights,
    )


def load_weights_on_driver(
    weights: str, image_size: int, engine: str, storage: Storage, model_cache: str | None = None
) -> LoadedWeights:
    """Load the weights once on the driver and serialise the model for broadcasting.

    `weights` is "imagenet" (Keras' own file; needs internet or a warm Keras cache) or the URI of
    a Keras weights file of either format (file:, s3://, dbfs:, ...). Fails loudly, never falls
    back to other weights. Converting to TFLite costs ~10 s of driver time; with `model_cache`
    the flatbuffer is kept under a name made of the weights' sha256, the image size and the
    TensorFlow version, so each weights version is converted once, not every night; a cached
    model that does not load is converted again and replaced.
    """
    if weights == "imagenet":
        model = _keras_imagenet_backbone(image_size)
        sha256 = _keras_cache_sha256(model)
        model_bytes = serialise_model(model, engine)
        return LoadedWeights(weights, sha256, LEGACY_WEIGHTS, model_bytes, engine, "weights")

    data = read_weights(weights, storage)
    weights_format = keras_weights_format(data, weights)
    sha256 = hashlib.sha256(data).hexdigest()
    cached = model_cache_uri(model_cache, sha256, image_size) if engine == "tflite" else None
    if cached and storage.exists(cached):
        model_bytes = storage.read(cached)
        problem = tflite_model_problem(model_bytes, image_size)
        if problem is None:
            return LoadedWeights(weights, sha256, weights_format, model_bytes, engine, cached)
        # Unchecked, a damaged file would fail every task of this run and of every later one.
        print(
            f"featurize: the cached model {cached} is unusable ({problem}); "
            "converting the weights again and replacing it",
            file=sys.stderr,
        )

    model = build_keras_backbone(image_size)
    load_weights_file(model, data, weights_format, weights)
    model_bytes = serialise_model(model, engine)
    if cached:
        storage.write(cached, model_bytes)
    return LoadedWeights(weights, sha256, weights_format, model_bytes, engine, "weights")


WEIGHTS_HINT = (
    "pass --weights with the URI of MobileNetV2 no-top weights (a Keras .weights.h5 file, or "
    "Keras' legacy .h5 such as mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)"
)


def read_weights(weights: str, storage: Storage) -> bytes:
    if not storage.exists(weights):  # else a FileNotFoundException deep in a Py4JJavaError
        raise SystemExit(f"featurize: --weights {weights}: no such file; {WEIGHTS_HINT}")
    return storage.read(weights)


def keras_weights_format(data: bytes, weights: str) -> str:
    """KERAS3_WEIGHTS or LEGACY_WEIGHTS, from the file's content (its name may say either)."""
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            holder = h5.get("model_weights", h5)  # a legacy whole-model file holds them there
            if any(name.startswith("layer_names") for name in holder.attrs):
                return LEGACY_WEIGHTS
            if "layers" in h5 and "vars" in h5:
                return KERAS3_WEIGHTS
    except OSError as error:  # not HDF5 at all
        raise SystemExit(f"featurize: --weights {weights} is not an HDF5 file ({error})") from None
    raise SystemExit(f"featurize: --weights {weights} is HDF5 but no Keras weights file")


def load_weights_file(model, data: bytes, weights_format: str, weights: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, LOADER_FILE_NAMES[weights_format])
        with open(local, "wb") as handle:
            handle.write(data)
        try:
            model.load_weights(local)
        except ValueError as error:  # another architecture, alpha or head
            raise SystemExit(
                f"featurize: --weights {weights} ({weights_format}) does not fit MobileNetV2 "
                f"alpha=1.0 without its top: {error}"
            ) from None


def tflite_model_problem(model_bytes: bytes, image_size: int) -> str | None:
    """Why the workers could not load this flatbuffer (a truncated write, say), or None."""
    try:
        TFLiteBackbone(model_bytes, image_size)  # as each worker builds it
    except (ValueError, RuntimeError) as error:  # unparsable / parsed but not runnable
        return str(error)
    return None


def model_cache_uri(model_cache: str | None, weights_sha256: str, image_size: int) -> str | None:
    if not model_cache:
        return None
    name = f"mobilenet_v2-{weights_sha256[:16]}-{image_size}px-tf{tensorflow_version()}.tflite"
    return model_cache.rstrip("/") + "/" + name


def tensorflow_version() -> str:
    """Without importing TensorFlow (3 s): a cached model must not pay for it."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("tensorflow-cpu", "tensorflow"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"


def _keras_imagenet_backbone(image_size: int):
    try:
        return build_keras_backbone(image_size, weights="imagenet")
    except Exception as error:
        raise SystemExit(
            "featurize: could not load Keras' ImageNet weights for MobileNetV2 "
            f"({type(error).__name__}: {error}). Without internet access, pass "
            "--weights with the URI of a pinned weights file (.weights.h5 or legacy .h5)."
        ) from error


def _keras_cache_sha256(model) -> str:
    cache = os.path.join(os.path.expanduser("~"), ".keras", "models")
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{model.input_shape[1]}_no_top.h5"
    path = os.path.join(cache, name)
    if not os.path.exists(path):
        return "unknown (keras cache file not found)"
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def serialise_model(model, engine: str) -> bytes:
    if engine == "tflite":
        import tensorflow as tf

        return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    if engine == "keras":
        import pickle

        return pickle.dumps([w.astype(np.float32) for w in model.get_weights()])
    raise ValueError(f"unknown engine {engine!r}")


class TFLiteBackbone:
    """The broadcast TFLite flatbuffer under LiteRT/XNNPACK, one thread, one image per call.

    Measured on our CPU, one image per invocation is the fastest (209 images/s against 155 for
    batches of 16): a single image's activations stay in cache.
    """

    micro_batch = 1  # images decoded before each call of predict

    def __init__(self, model_bytes: bytes, image_size: int):
        # LiteRT (TensorFlow Lite's runtime) imports in 0.1 s without TensorFlow.
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=model_bytes, num_threads=1)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._interpreter.resize_tensor_input(self._input, [1, image_size, image_size, 3])
        self._interpreter.allocate_tensors()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) float32 -> (n, 1280) float32."""
        features = np.empty((len(images), FEATURE_SIZE), np.float32)
        for row, image in enumerate(images):
            self._interpreter.set_tensor(self._input, image[np.newaxis])
            self._interpreter.invoke()
            features[row] = self._interpreter.get_tensor(self._output)[0]
        return features


class KerasBackbone:
    """MobileNetV2 rebuilt from the broadcast weight arrays, run in micro-batches."""

    micro_batch = KERAS_MICRO_BATCH

    def __init__(self, model_bytes: bytes, image_size: int):
        import pickle

        import tensorflow as tf

        # Spark already runs one task per core: TensorFlow using every core in every worker
        # only adds contention.
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        model = build_keras_backbone(image_size)
        model.set_weights(pickle.loads(model_bytes))  # noqa: S301 (our own broadcast)
        self._model = tf.function(lambda x: model(x, training=False))

    def predict(self, images: np.ndarray) -> np.ndarray:
        chunks = [
            np.asarray(self._model(images[start : start + KERAS_MICRO_BATCH]), np.float32)
            for start in range(0, len(images), KERAS_MICRO_BATCH)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, FEATURE_SIZE), np.float32)


def make_backbone(model_bytes: bytes, engine: str, image_size: int):
    _keep_freed_memory_in_the_heap()
    if engine == "tflite":
        return TFLiteBackbone(model_bytes, image_size)
    return KerasBackbone(model_bytes, image_size)


def _keep_freed_memory_in_the_heap() -> None:
    """Stop glibc from returning memory to the kernel after every batch.

    Each image allocates and frees a few 600 KB arrays; by default glibc trims the heap (brk)
    after such frees and the kernel must zero fresh pages on the next batch: in Spark's workers
    that was half of all CPU time spent in the kernel.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 512 * 2**20)
    libc.mallopt(m_mmap_threshold, 64 * 2**20)


# One Backbone per Python worker process: Spark reuses workers across tasks, so the model is
# built once per worker, not per task, batch or row. Kept with the broadcast it was built from
# and matched by identity: a worker also outlives a job, and a stored id() could match a later
# job's broadcast (other weights, another size) at the address of a collected one.
_BACKBONE: tuple[object, TFLiteBackbone | KerasBackbone] | None = None


class UnreadableImages(AccumulatorParam):
    """path -> error of the images the workers could not decode, merged on the driver as tasks end.

    Lets one pass over the images write the features and still know every unreadable one,
    without caching 1,280 floats per image for a second pass. Keyed by path, so the report of a
    task that Spark runs twice counts once. A few rows per run as a rule (under 1 KB each).
    """

    def zero(self, value: dict[str, str]) -> dict[str, str]:
        return {}

    def addInPlace(self, value1: dict[str, str], value2: dict[str, str]) -> dict[str, str]:
        value1.update(value2)
        return value1


def featurize_partition(
    batches: Iterator[pa.RecordBatch], broadcast, engine: str, image_size: int, unreadable
) -> Iterator[pa.RecordBatch]:
    """The body of `mapInArrow`: (path, content) batches in, (path, features) of the readable
    images out; the others are added to the `unreadable` accumulator."""
    global _BACKBONE
    if _BACKBONE is None or _BACKBONE[0] is not broadcast:
        _BACKBONE = (broadcast, make_backbone(broadcast.value, engine, image_size))
    backbone = _BACKBONE[1]
    for batch in batches:
        featurized, errors = split_errors(featurize_batch(batch, backbone, image_size))
        if errors:
            unreadable.add(errors)
        yield featurized


def split_errors(result: pa.RecordBatch) -> tuple[pa.RecordBatch, dict[str, str]]:
    """featurize_batch rows -> (path, features) of featurized ones; path -> error of the rest."""
    featurized = pc.is_null(result.column("error"))
    rest = result.filter(pc.invert(featurized))
    errors = dict(zip(rest.column("path").to_pylist(), rest.column("error").to_pylist()))
    kept = result.filter(featurized)
    return pa.RecordBatch.from_arrays(
        [kept.column("path"), kept.column("features")], names=["path", "features"]
    ), errors


def featurize_batch(batch: pa.RecordBatch, backbone, image_size: int) -> pa.RecordBatch:
    """One Arrow batch, row for row: either `features` (1280 floats) or `error` is null.

    Arrow in and out, no pandas: the features leave as one contiguous float32 buffer wrapped as a
    list column, where a pandas UDF would convert 1,280-float arrays row by row. Images go to the
    model as soon as a micro-batch of them is decoded, while their pixels are still in the CPU's
    cache: 2% faster than decoding the whole batch first, and no 38 MB array of pixels per batch.
    """
    contents = batch.column("content")
    rows = batch.num_rows
    pixels = np.empty((backbone.micro_batch, image_size, image_size, 3), np.float32)
    features = np.empty((rows, FEATURE_SIZE), np.float32)  # decoded rows only, in order
    decoded_rows: list[int] = []
    errors: list[str | None] = [None] * rows
    waiting = 0  # decoded into `pixels`, not yet through the model

    def run_model() -> None:
        done = len(decoded_rows)
        features[done - waiting : done] = backbone.predict(pixels[:waiting])

    for row in range(rows):
        content = contents[row].as_py()  # one photo's bytes at a time, not a copy of the batch
        try:
            decode_image(content, image_size, out=pixels[waiting])
        except Exception as error:  # any undecodable input becomes a quarantine row
            errors[row] = describe_error(error, content)
            continue
        decoded_rows.append(row)
        waiting += 1
        if waiting == len(pixels):
            run_model()
            waiting = 0
    if waiting:
        run_model()
    return pa.RecordBatch.from_arrays(
        [
            batch.column("path"),
            feature_column(features[: len(decoded_rows)], decoded_rows, rows),
            pa.array(errors, pa.string()),
        ],
        schema=RESULT_SCHEMA,
    )


def feature_column(features: np.ndarray, rows: list[int], length: int) -> pa.ListArray:
    """(len(rows), 1280) float32 -> a list<float> column of `length`, null where no row."""
    sizes = np.zeros(length, np.int32)
    sizes[rows] = FEATURE_SIZE
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int32)])
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(features.reshape(-1), pa.float32()),
        mask=pa.array(sizes == 0),
    )


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


# --------------------------------------------------------------------------------------------
# The Spark side
# --------------------------------------------------------------------------------------------


# How the photos are read, in bulk or by explicit path.
IMAGE_READ_OPTIONS = {
    "recursiveFileLookup": "true",  # every subfolder, no partition discovery
    # One object Spark cannot read must not fail the run: Spark skips it, the job's own listing
    # finds it missing and quarantines it with the reason the driver gets reading it.
    "ignoreCorruptFiles": "true",
    "ignoreMissingFiles": "true",
    # Hadoop's checksummed local file system opens a `.<name>.crc` beside each file and cannot
    # parse that name when it holds a ':' (12:30:00.jpg failed the whole job). Local reads go
    # through the raw local file system instead (nothing else is `file:` on a cluster).
    "fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    "fs.file.impl.disable.cache": "true",
}
# Spark's pathGlobFilter is case-sensitive: *.{[jJ][pP][gG],...} matches .JpEg too.
IMAGE_GLOB = (
    "*.{"
    + ",".join("".join(f"[{c}{c.upper()}]" for c in extension) for extension in IMAGE_EXTENSIONS)
    + "}"
)
HIDDEN_NAME_ERROR = (
    "hidden name: Spark's file sources never read a file whose name starts with '_' or '.', "
    "even by its full path; rename it to have it featurized"
)
UNGLOBBABLE_ERROR = (
    "cannot be read through Spark: in a folder Spark's listing skips ('_' or '.'), a path "
    "holding ':' and one of *?[]{}\\ can only be given to Spark as a pattern, which Hadoop "
    "cannot parse; rename it to have it featurized"
)


def list_images(spark: SparkSession, input_uri: str) -> dict[str, str | None]:
    """Every object under input_uri named like an image, whatever the name, from the file
    system's own listing (jobio.list_files), not from the rules of Spark's DataFrame reader:
    path -> the reason it cannot be read when the listing already tells, else None."""
    import jobio

    try:
        files = jobio.list_files(spark, input_uri)
    except FileNotFoundError:
        raise SystemExit(f"featurize: input {input_uri} does not exist") from None
    return {path: problem for path, problem in files.items() if is_image_name(path)}


def is_image_name(path: str) -> bool:
    _, dot, extension = path.rpartition("/")[2].rpartition(".")
    return bool(dot) and extension.isascii() and extension.lower() in IMAGE_EXTENSIONS


def hidden_from_spark(path: str) -> bool:
    """Names that Spark's file indexes drop even when given explicitly (isDataPath in
    PartitioningAwareFileIndex, Spark 3 and 4): leading '_' without '=', or leading '.'."""
    name = path.rpartition("/")[2]
    return (name.startswith("_") and "=" not in name) or name.startswith(".")


def read_images(
    spark: SparkSession, input_uri: str, listed: dict[str, str | None]
) -> tuple[DataFrame, dict[str, str]]:
    """(path, content) of the listed images that Spark can read; path -> reason for the others.

    Spark's own listing of input_uri reads nearly all of them at once. Images in folders whose
    names start with '_' or '.' (which that listing skips) are read by their explicit paths, a
    second small read; images whose own names do are quarantined (HIDDEN_NAME_ERROR), and so
    are the few of those folders' images that no explicit path can name (UNGLOBBABLE_ERROR).
    Files of more than MAX_FILE_BYTES give no row (the length filter runs before their bytes
    are read).
    """
    bulk = image_reader(spark).option("pathGlobFilter", IMAGE_GLOB).load(literal_path(input_uri))
    unreadable = {path: problem for path, problem in listed.items() if problem}
    left_out = not_in_bulk_read(bulk, [path for path in listed if path not in unreadable])
    unreadable.update({path: HIDDEN_NAME_ERROR for path in left_out if hidden_from_spark(path)})
    unreadable.update({path: UNGLOBBABLE_ERROR for path in left_out if unglobbable(path)})
    explicit, failed = read_paths(spark, [path for path in left_out if path not in unreadable])
    unreadable.update(failed)
    images = bulk if explicit is None else bulk.unionByName(explicit)
    return images.where(F.col("length") <= MAX_FILE_BYTES).select("path", "content"), unreadable


def image_reader(spark: SparkSession):
    return spark.read.format("binaryFile").options(**IMAGE_READ_OPTIONS)


def literal_path(path: str) -> str:
    """`path` as DataFrameReader.load reads it literally: load expands the glob characters
    `*?[]{}` (Hadoop's globber, where a backslash escapes them)."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", path)


def unglobbable(path: str) -> bool:
    """A path load must glob (it holds `*?[]{}` or a backslash) and whose own name or folders
    hold a ':': Hadoop's globber parses each part of the path on its own, where `12:00` reads
    as a URI scheme, and fails."""
    return literal_path(path) != path and ":" in path.partition(":")[2]


def not_in_bulk_read(bulk: DataFrame, readable: list[str]) -> list[str]:
    """The readable listed images that Spark's listing of the folder left out.

    From the listing Spark already made on the driver: no job, nothing read. The JVM's own
    array, not `DataFrame.inputFiles()`, which fetches it one py4j call per file (0.7 s for
    13,680): its length is one call, and its paths are only needed when the counts differ.
    """
    found = bulk._jdf.inputFiles()
    if len(found) == len(readable):
        return []
    string_utils = bulk.sparkSession.sparkContext._jvm.org.apache.hadoop.util.StringUtils
    # URIs, escaped (a newline in a name is %0A): one string, split here.
    uris = string_utils.join("\n", found).split("\n") if len(found) else []
    shown = {path_from_uri(uri) for uri in uris}
    return [path for path in readable if path not in shown]


def path_from_uri(uri: str) -> str:
    """A URI of inputFiles() (file:///in/a%20b.jpg) as Hadoop's Path.toString() and the `path`
    column show it (file:/in/a b.jpg)."""
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}"


PLANNING_ERRORS = (AnalysisException, IllegalArgumentException, Py4JJavaError)


def read_paths(spark: SparkSession, paths: list[str]) -> tuple[DataFrame | None, dict[str, str]]:
    """(path, content, ...) of these files read by their explicit paths; path -> Spark's error
    for any it refuses at planning (Spark plans them together: one refusal fails them all, so
    they are then read one by one)."""
    if not paths:
        return None, {}
    failed: dict[str, str] = {}
    try:
        frame = image_reader(spark).load([literal_path(path) for path in paths])
    except PLANNING_ERRORS:
        frames = []
        for path in paths:
            try:
                frames.append(image_reader(spark).load(literal_path(path)))
            except PLANNING_ERRORS as error:
                failed[path] = "cannot be read through Spark: " + str(error).splitlines()[0][:300]
        frame = reduce(DataFrame.unionByName, frames) if frames else None
    return frame, failed


def label_of(path: Column) -> Column:
    """The parent folder's name."""
    return F.element_at(F.split(path, "/"), -2)


def split_of(path: Column) -> Column:
    """'Training' or 'Test' when such a folder is on the path (nearest one wins), else ''."""
    folders = F.slice(F.split(path, "/"), 1, F.size(F.split(path, "/")) - 1)
    named = F.filter(folders, lambda folder: folder.isin(*SPLIT_FOLDERS))
    # element_at on an empty array is an error under ANSI SQL (Spark 4's default), so test size.
    return F.when(F.size(named) > 0, F.element_at(named, -1)).otherwise(F.lit(""))


# How the features Parquet is written. Nearly every one of the 1,280 floats of a row is distinct,
# so a dictionary never pays off, yet Parquet fills one before giving up: that was a quarter of
# the JVM's time in the write. zstd makes the files 40% smaller than snappy (15 MB against
# 26 MB for 13,680 images) for the same write time.
FEATURES_PARQUET_OPTIONS = {
    "parquet.enable.dictionary#features.list.element": "false",
    "compression": "zstd",
}

EMPTY_FILE_ERROR = "ValueError: empty file"
TOO_LARGE_ERROR = f"ValueError: file too large: over {MAX_FILE_BYTES} bytes"
QUARANTINE_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string())])


def quarantine_parquet(unreadable: dict[str, str]) -> bytes:
    """path -> error as one Parquet file, sorted by path.

    The driver already holds these rows, a few per run as a rule: written from here they need
    no Spark job (a one-task job took a second) and make one file, not one per partition.
    """
    import pyarrow.parquet as pq

    paths = sorted(unreadable)
    table = pa.table([paths, [unreadable[p] for p in paths]], schema=QUARANTINE_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@dataclass(frozen=True)
class Accounting:
    """How the listed images that gave no row and no error are accounted for."""

    quarantined: dict[str, str]  # path -> the reason the driver found
    missing: list[str]  # listed, read fine by the driver, yet neither featurized nor quarantined
    unexpected: list[str]  # featurized or quarantined but not listed, or featurized twice


def account_for(
    listed: Collection[str],
    featurized: int,
    quarantined: dict[str, str],
    featurized_paths: Callable[[], list[str]],
    why_unread: Callable[[str], str | None],
) -> Accounting:
    """Check that every listed image is featurized or quarantined, exactly once.

    Counts first: every listed image gives at most one row, so the paths are only compared when
    the counts differ. A listed image that gave no row (Spark plans no read of a zero-byte file,
    skips one it cannot read, drops one over MAX_FILE_BYTES) gets the reason `why_unread` finds
    reading it on the driver; one that reads fine there stays `missing`.
    """
    listed_set = set(listed)
    if featurized + len(quarantined) == len(listed_set) and quarantined.keys() <= listed_set:
        return Accounting({}, [], [])
    paths = featurized_paths()
    seen = set(paths) | quarantined.keys()
    twice = {path for path, times in Counter(paths).items() if times > 1}
    found: dict[str, str] = {}
    missing = []
    for path in sorted(listed_set - seen):
        reason = why_unread(path)
        if reason:
            found[path] = reason
        else:
            missing.append(path)
    return Accounting(found, missing, sorted((seen - listed_set) | twice))


def unread_reason(path: str, probe: Callable[[str], int]) -> str | None:
    """Why a listed image gave no row, from reading it on the driver (jobio.probe); None when
    the driver reads it fine."""
    try:
        length = probe(path)
    except OSError as error:
        return f"cannot be read: {error}"[:500]
    if length == 0:
        return EMPTY_FILE_ERROR
    if length > MAX_FILE_BYTES:
        return TOO_LARGE_ERROR
    return None


def featurize(images: DataFrame, broadcast, engine: str, image_size: int, unreadable) -> DataFrame:
    """path, content -> path, label, split, features of the readable images.

    The others are added to `unreadable` (an UnreadableImages accumulator) as the tasks end.
    """
    featurized = images.mapInArrow(
        partial(
            featurize_partition,
            broadcast=broadcast,
            engine=engine,
            image_size=image_size,
            unreadable=unreadable,
        ),
        FEATURIZED_DDL,
    )
    return featurized.select(
        "path",
        label_of(F.col("path")).alias("label"),
        split_of(F.col("path")).alias("split"),
        "features",
    )


@dataclass(frozen=True)
class Args:
    input: str
    output: str
    quarantine: str
    weights: str
    image_size: int
    engine: str
    model_cache: str | None


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="folder or prefix of images")
    parser.add_argument("--output", required=True, help="where the features Parquet goes")
    parser.add_argument("--quarantine", help="unreadable images (default <output>_quarantine)")
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' or the URI of a Keras .weights.h5 or legacy .h5 file",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--engine", choices=("tflite", "keras"), default="tflite")
    parser.add_argument("--model-cache", help="folder keeping converted TFLite models (optional)")
    parsed = parser.parse_args(argv)
    if not 32 <= parsed.image_size <= 1024:
        parser.error("--image-size must be between 32 and 1024")
    output = parsed.output.rstrip("/")
    return Args(
        input=parsed.input,
        output=output,
        quarantine=(parsed.quarantine or output + "_quarantine").rstrip("/"),
        weights=parsed.weights,
        image_size=parsed.image_size,
        engine=parsed.engine,
        model_cache=parsed.model_cache,
    )


def configure_for_images(spark: SparkSession) -> None:
    """Spread the photos evenly over a few tasks per core and feed the UDF small Arrow batches.

    Spark's default 4 MB `openCostInBytes` makes a 5 KB photo weigh like a 4 MB file, so 4,560
    photos became 3 lopsided partitions on 2 cores. Counting each file at 8 KB and asking for at
    least 4 partitions per core gives even tasks and a short tail. 64-row Arrow batches keep the
    Python workers' memory flat however large a partition is, and partitions of at most
    MAX_PARTITION_BYTES keep it flat however large the photos are.
    """
    cores = spark.sparkContext.defaultParallelism
    if spark.sparkContext.master.startswith("local"):
        # A "parallel" listing job runs in this same JVM: listing directly is quicker.
        spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.threshold", str(2**31 - 1))
    spark.conf.set("spark.sql.files.openCostInBytes", str(8 * 1024))
    spark.conf.set("spark.sql.files.minPartitionNum", str(4 * cores))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(MAX_PARTITION_BYTES))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))


def main(argv: list[str] | None = None) -> None:
    import jobio

    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-featurize").getOrCreate()
    configure_for_images(spark)

    input_uri = jobio.qualify(args.input)
    listed = list_images(spark, input_uri)
    if not listed:  # fail before loading any model
        raise SystemExit(f"featurize: no .jpg/.jpeg/.png images found under {args.input}")
    images, unreadable = read_images(spark, input_uri, listed)

    weights_uri = args.weights if args.weights == "imagenet" else jobio.qualify(args.weights)
    storage = Storage(
        read=partial(jobio.read_bytes, spark),
        write=partial(jobio.write_bytes, spark),
        exists=partial(jobio.exists, spark),
    )
    model_cache = jobio.qualify(args.model_cache) if args.model_cache else None
    loaded = load_weights_on_driver(weights_uri, args.image_size, args.engine, storage, model_cache)
    broadcast = spark.sparkContext.broadcast(loaded.model_bytes)
    # Said here, not in the manifest: how this run got the model is no fact about the output.
    origin = loaded.compiled_from
    print(f"featurize: model {'converted from the weights' if origin == 'weights' else origin}")

    # One pass: the model runs once per image and its features are written as they come.
    undecodable = spark.sparkContext.accumulator({}, UnreadableImages())
    features = featurize(images, broadcast, args.engine, args.image_size, undecodable)
    features.write.mode("overwrite").options(**FEATURES_PARQUET_OPTIONS).parquet(args.output)

    written = spark.read.schema(features.schema).parquet(args.output)  # no job to infer it
    featurized = written.count()  # from the Parquet footers
    quarantine = {**unreadable, **undecodable.value}
    accounting = account_for(
        listed,
        featurized,
        quarantine,
        lambda: [row["path"] for row in written.select("path").toLocalIterator()],
        partial(unread_reason, probe=partial(jobio.probe, spark)),
    )
    quarantine.update(accounting.quarantined)
    counts = {"read": len(listed), "featurized": featurized, "quarantined": len(quarantine)}
    jobio.delete(spark, args.quarantine)
    jobio.write_bytes(
        spark, jobio.join(args.quarantine, "part-00000.parquet"), quarantine_parquet(quarantine)
    )
    if accounting.missing or accounting.unexpected:  # no manifest: the output is not complete
        raise SystemExit(unaccounted_message(args.input, accounting))
    if featurized == 0:
        raise SystemExit(
            f"featurize: none of the {counts['read']} images under {args.input} could be read; "
            f"the errors are in {args.quarantine}"
        )

    jobio.write_json(
        spark,
        jobio.join(args.output, "_manifest.json"),
        build_manifest(args, loaded, counts, spark.version),
    )
    print(
        f"featurize: {counts['read']} images under {args.input}: "
        f"{featurized} featurized -> {args.output}, "
        f"{counts['quarantined']} quarantined -> {args.quarantine} "
        f"in {time.time() - started:.3f} s"  # benchmarks/featurize.py reads the time here
    )


def unaccounted_message(input_uri: str, accounting: Accounting, shown: int = 20) -> str:
    lines = [f"featurize: the images under {input_uri} do not add up:"]
    if accounting.missing:
        lines.append(
            f"{len(accounting.missing)} listed images were neither featurized nor quarantined, "
            "though the driver reads them (Spark skipped them: see 'Skipped the rest of the "
            "content in the corrupted file' in the executors' logs):"
        )
        lines += [f"  {path}" for path in accounting.missing[:shown]]
    if accounting.unexpected:
        lines.append(
            f"{len(accounting.unexpected)} images were featurized twice or not listed "
            "(written to the input during the run?):"
        )
        lines += [f"  {path}" for path in accounting.unexpected[:shown]]
    return "\n".join(lines)


def build_manifest(
    args: Args, loaded: LoadedWeights, counts: dict[str, int], spark_version: str
) -> dict:
    """What produced the output, and nothing of the clock: the same inputs, code and weights give
    the same manifest, byte for byte (a re-run of a night leaves the lake unchanged)."""
    return {
        "job": "featurize",
        "input": args.input,
        "output": args.output,
        "quarantine": args.quarantine,
        "counts": counts,
        "weights": {"source": loaded.source, "sha256": loaded.sha256, "format": loaded.format},
        "model": {
            "architecture": "MobileNetV2 alpha=1.0 include_top=False pooling=avg",
            "engine": loaded.engine,
            "broadcast_sha256": hashlib.sha256(loaded.model_bytes).hexdigest(),
            "feature_size": FEATURE_SIZE,
        },
        "image_size": args.image_size,
        "versions": {
            "spark": spark_version,
            "tensorflow": tensorflow_version(),
            "python": sys.version.split()[0],
        },
    }


if __name__ == "__main__":
    main()
