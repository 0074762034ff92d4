"""Features from plain Keras, independent of the job's code: the yardstick for correctness."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def keras_features(paths: list[Path], weights: Path, size: int = 224) -> np.ndarray:
    import keras

    model = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), include_top=False, pooling="avg", weights=None
    )
    model.load_weights(weights)
    batch = np.stack(
        [
            keras.utils.img_to_array(
                keras.utils.load_img(p, target_size=(size, size), interpolation="bilinear")
            )
            for p in paths
        ]
    )
    inputs = keras.applications.mobilenet_v2.preprocess_input(batch)
    return model.predict(inputs, batch_size=32, verbose=0)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
