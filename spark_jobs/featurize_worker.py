"""From photos to features rows: the worker `mapInArrow` runs (decode a batch of photos, run
the model, return features or errors) and the DataFrame it fills, `path, label, split, features`.

The workers get and return Arrow batches: the 1,280 features of a batch leave as one float32
buffer, not as pandas objects converted row by row. The model is rebuilt once per Python worker
from the broadcast (`backbone.make_backbone`); unreadable photos reach the driver through the
UnreadableImages accumulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import AccumulatorParam
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from backbone import FEATURE_SIZE, Engine, KerasBackbone, TFLiteBackbone, make_backbone
from decoding import decode_image, describe_error

SPLIT_FOLDERS = ("Training", "Test")

# What featurize_batch returns for each image (its features or an error), and the part of it the
# workers give Spark: the featurized images (the others reach the driver via UnreadableImages).
RESULT_SCHEMA = pa.schema(
    [("path", pa.string()), ("features", pa.list_(pa.float32())), ("error", pa.string())]
)
FEATURIZED_DDL = "path string, features array<float>"


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
    batches: Iterator[pa.RecordBatch], broadcast, engine: Engine, image_size: int, unreadable
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
    cache: faster than decoding the whole batch first, and no batch-sized array of pixels.
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


def label_of(path: Column) -> Column:
    """The parent folder's name."""
    return F.element_at(F.split(path, "/"), -2)


def split_of(path: Column) -> Column:
    """'Training' or 'Test' when such a folder is on the path (nearest one wins), else ''."""
    folders = F.slice(F.split(path, "/"), 1, F.size(F.split(path, "/")) - 1)
    named = F.filter(folders, lambda folder: folder.isin(*SPLIT_FOLDERS))
    # element_at on an empty array is an error under ANSI SQL (Spark 4's default), so test size.
    return F.when(F.size(named) > 0, F.element_at(named, -1)).otherwise(F.lit(""))


def featurize(
    images: DataFrame, broadcast, engine: Engine, image_size: int, unreadable
) -> DataFrame:
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
