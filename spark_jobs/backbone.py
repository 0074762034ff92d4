"""The model: built once on the driver from the weights, shipped serialised, rebuilt once per
Python worker. The driver side reads either of Keras' weights formats and keeps converted TFLite
models in a cache; the worker side runs a TFLite (or Keras) MobileNetV2 on a batch of pixels.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

FEATURE_SIZE = 1280
# How the workers run the model: a TensorFlow Lite flatbuffer (LiteRT, XNNPACK) or Keras itself.
Engine = Literal["tflite", "keras"]
ENGINES: tuple[Engine, ...] = get_args(Engine)
# Images per call of the Keras engine: small enough to stay in cache.
KERAS_MICRO_BATCH = 16

# Keras 3 reads each of its two HDF5 weights layouts with its own loader, chosen by the file's
# name; a weights file is recognised by what is in it and saved under the name its loader needs.
KERAS3_WEIGHTS = "keras3 .weights.h5"  # model.save_weights() of Keras 3
LEGACY_WEIGHTS = "keras legacy .h5"  # Keras 2's save_weights(), and Keras' own ImageNet file
LOADER_FILE_NAMES = {KERAS3_WEIGHTS: "backbone.weights.h5", LEGACY_WEIGHTS: "backbone.h5"}
# `--weights imagenet`: Keras' own ImageNet file, which Keras downloads (no URI of ours).
IMAGENET = "imagenet"


@dataclass(frozen=True)
class LoadedWeights:
    source: str  # IMAGENET or the URI the weights were read from
    sha256: str
    format: str  # KERAS3_WEIGHTS or LEGACY_WEIGHTS
    model_bytes: bytes  # what is broadcast: a TFLite flatbuffer or the pickled weight arrays
    engine: Engine
    cached_model: str | None  # the model-cache URI the model was read from; None: converted now


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
    weights: str,
    image_size: int,
    engine: Engine,
    storage: Storage,
    model_cache: str | None = None,
    expected_sha256: str | None = None,
) -> LoadedWeights:
    """Load the weights once on the driver and serialise the model for broadcasting.

    `weights` is IMAGENET (Keras' own file; needs internet or a warm Keras cache) or the URI of
    a Keras weights file of either format (file:, s3://, dbfs:, ...). Fails loudly, never falls
    back to other weights. Converting to TFLite costs seconds of driver time; with `model_cache`
    the flatbuffer is kept under a name made of the weights' sha256, the image size and the
    TensorFlow version, so each weights version is converted once, not every night; a cached
    model that does not load is converted again and replaced. With `expected_sha256` (the
    deployment's pinned weights), weights of any other sha256 stop the job before any model is
    built.
    """
    if weights == IMAGENET:
        model = _keras_imagenet_backbone(image_size)
        sha256 = _keras_cache_sha256(model)
        check_sha256(weights, sha256, expected_sha256)
        model_bytes = serialise_model(model, engine)
        return LoadedWeights(weights, sha256, LEGACY_WEIGHTS, model_bytes, engine, None)

    data = read_weights(weights, storage)
    sha256 = hashlib.sha256(data).hexdigest()
    check_sha256(weights, sha256, expected_sha256)
    weights_format = keras_weights_format(data, weights)
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
    return LoadedWeights(weights, sha256, weights_format, model_bytes, engine, None)


def check_sha256(weights: str, sha256: str, expected: str | None) -> None:
    """The weights read are the ones the deployment pinned (its `weights_sha256` setting)."""
    if expected is not None and sha256 != expected.lower():
        raise SystemExit(
            f"featurize: --weights {weights} has sha256 {sha256}, not the {expected} given by "
            "--weights-sha256 (the deployment's weights_sha256 setting): the file changed since "
            "it was pinned; pin the new file's sha256 or restore the pinned file"
        )


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


def serialise_model(model, engine: Engine) -> bytes:
    if engine == "tflite":
        import tensorflow as tf

        # The converter exports a SavedModel first, and Keras prints its signature on stdout:
        # a `TensorSpec` line for each of the model's hundreds of variables, in every task log.
        with contextlib.redirect_stdout(io.StringIO()):
            return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    if engine == "keras":
        import pickle

        return pickle.dumps([w.astype(np.float32) for w in model.get_weights()])
    raise ValueError(f"unknown engine {engine!r}")


class TFLiteBackbone:
    """The broadcast TFLite flatbuffer under LiteRT/XNNPACK, one thread, one image per call.

    One image per invocation is the fastest (docs/performance.md, "Figures behind the code"): a
    single image's activations stay in cache.
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


def make_backbone(model_bytes: bytes, engine: Engine, image_size: int):
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
