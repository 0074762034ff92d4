"""Featurize fruit photos with a pretrained MobileNetV2 on Spark.

    spark-submit spark_jobs/featurize.py --input URI --output URI
        [--weights imagenet|URI] [--weights-sha256 HEX] [--quarantine URI] [--image-size 224]
        [--engine tflite|keras] [--model-cache URI]

Reads every object under --input whose name ends in .jpg/.jpeg/.png (any case; Spark `binaryFile`),
labels each image by its parent folder, and writes one row per image to Parquet at --output:
`path, label, split, features` (1280 float32, MobileNetV2 include_top=False + average pooling).
Images that cannot be read go to --quarantine as `path, error`. The job lists --input itself, by
the file system's API, and checks at the end that every image it listed is either featurized or
quarantined: it fails naming any that is neither (and when nothing at all could be read).
`<output>/_manifest.json` is written last: its presence marks the output as complete, and it
records the counts, the weights used (source and sha256) and the versions. With
--weights-sha256, weights of another sha256 stop the job before any photo is read.

How the model reaches the executors: the driver loads the weights once, builds the model and
broadcasts it, serialised, to the executors; each Python worker deserialises it once and reuses it
for every batch of every task it runs (Spark reuses Python workers). With `--engine tflite` (the
default) what is broadcast is a TensorFlow Lite flatbuffer converted on the driver from the very
same Keras model, run with XNNPACK and one thread per Spark task: faster than Keras on CPU for
the same float32 features (docs/performance.md). With `--engine keras` the weight arrays
themselves are broadcast.
The workers get and return Arrow batches (`mapInArrow`): the 1,280 features of a batch leave as
one float32 buffer, not as pandas objects converted row by row.

The parts: `image_reading.py` (listing and reading the photos through Spark, its quirks
included), `featurize_worker.py` (the worker and the rows it makes), `backbone.py` (the
model), `accounting.py` (every photo featurized or quarantined, once); this file wires them.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass
from functools import partial

from pyspark.sql import DataFrame, SparkSession

import backbone
import decoding
import featurize_worker
import jobio
from accounting import account_for, quarantine_parquet, unaccounted_message, unread_reason
from backbone import (
    ENGINES,
    FEATURE_SIZE,
    Engine,
    LoadedWeights,
    Storage,
    load_weights_on_driver,
    tensorflow_version,
)
from featurize_worker import UnreadableImages, featurize
from image_reading import configure_for_images, list_images, read_images
from lake_layout import FEATURES_COMPLETE, QUARANTINE_FILE

# How the features Parquet is written. Nearly every one of the 1,280 floats of a row is distinct,
# so a dictionary never pays off, yet Parquet fills one before giving up, a large part of the
# JVM's time in the write. zstd makes the files much smaller than snappy for the same write time
# (docs/performance.md, "Figures behind the code").
FEATURES_PARQUET_OPTIONS = {
    "parquet.enable.dictionary#features.list.element": "false",
    "compression": "zstd",
}


@dataclass(frozen=True)
class Args:
    input: str
    output: str
    quarantine: str
    weights: str
    weights_sha256: str | None
    image_size: int
    engine: Engine
    model_cache: str | None


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="folder or prefix of images")
    parser.add_argument("--output", required=True, help="where the features Parquet goes")
    parser.add_argument("--quarantine", help="unreadable images (default <output>_quarantine)")
    parser.add_argument(
        "--weights",
        default=backbone.IMAGENET,
        help="'imagenet' or the URI of a Keras .weights.h5 or legacy .h5 file",
    )
    parser.add_argument(
        "--weights-sha256", help="the weights' expected sha256: other weights stop the job"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--engine", choices=ENGINES, default="tflite")
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
        weights_sha256=parsed.weights_sha256,
        image_size=parsed.image_size,
        engine=parsed.engine,
        model_cache=parsed.model_cache,
    )


def load_model(spark: SparkSession, args: Args) -> LoadedWeights:
    """The weights read once on the driver (checked against --weights-sha256) and serialised for
    the broadcast, through the model cache when one is given."""
    weights_uri = args.weights if args.weights == backbone.IMAGENET else jobio.qualify(args.weights)
    storage = Storage(
        read=partial(jobio.read_bytes, spark),
        write=partial(jobio.write_bytes, spark),
        exists=partial(jobio.exists, spark),
    )
    model_cache = jobio.qualify(args.model_cache) if args.model_cache else None
    loaded = load_weights_on_driver(
        weights_uri, args.image_size, args.engine, storage, model_cache, args.weights_sha256
    )
    # Said here, not in the manifest: how this run got the model is no fact about the output.
    print(f"featurize: model {loaded.cached_model or 'converted from the weights'}")
    return loaded


def write_quarantine(spark: SparkSession, folder: str, quarantine: dict[str, str]) -> None:
    jobio.delete(spark, folder)
    jobio.write_bytes(spark, jobio.join(folder, QUARANTINE_FILE), quarantine_parquet(quarantine))


def account_and_quarantine(
    spark: SparkSession,
    args: Args,
    listed: dict[str, str | None],
    written: DataFrame,
    quarantine: dict[str, str],
) -> dict[str, int]:
    """Every listed image featurized (in `written`) or quarantined, once; the quarantine written.
    Stops the job (no manifest: the output is not complete) when they do not add up, or when no
    image could be featurized. Returns the counts."""
    featurized = written.count()  # from the Parquet footers
    accounting = account_for(
        listed,
        featurized,
        quarantine,
        lambda: [row["path"] for row in written.select("path").toLocalIterator()],
        partial(unread_reason, probe=partial(jobio.probe, spark)),
    )
    quarantine = {**quarantine, **accounting.quarantined}
    write_quarantine(spark, args.quarantine, quarantine)
    if accounting.missing or accounting.unexpected:
        raise SystemExit(unaccounted_message(args.input, accounting))
    if featurized == 0:
        raise SystemExit(
            f"featurize: none of the {len(listed)} images under {args.input} could be read; "
            f"the errors are in {args.quarantine}"
        )
    return {"read": len(listed), "featurized": featurized, "quarantined": len(quarantine)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    spark = SparkSession.builder.appName("fruits-featurize").getOrCreate()
    configure_for_images(spark)
    # What the workers' code imports, for a run from a checkout (the library zip has them).
    jobio.ship_to_workers(spark, backbone, decoding, featurize_worker)

    input_uri = jobio.qualify(args.input)
    listed = list_images(spark, input_uri)
    if not listed:  # fail before loading any model
        raise SystemExit(f"featurize: no .jpg/.jpeg/.png images found under {args.input}")
    images, unreadable = read_images(spark, input_uri, listed)
    loaded = load_model(spark, args)
    broadcast = spark.sparkContext.broadcast(loaded.model_bytes)

    # One pass: the model runs once per image and its features are written as they come.
    undecodable = spark.sparkContext.accumulator({}, UnreadableImages())
    features = featurize(images, broadcast, args.engine, args.image_size, undecodable)
    features.write.mode("overwrite").options(**FEATURES_PARQUET_OPTIONS).parquet(args.output)

    written = spark.read.schema(features.schema).parquet(args.output)  # no job to infer it
    counts = account_and_quarantine(
        spark, args, listed, written, {**unreadable, **undecodable.value}
    )
    jobio.write_json(
        spark,
        jobio.join(args.output, FEATURES_COMPLETE),
        build_manifest(args, loaded, counts, spark.version),
    )
    print(
        f"featurize: {counts['read']} images under {args.input}: "
        f"{counts['featurized']} featurized -> {args.output}, "
        f"{counts['quarantined']} quarantined -> {args.quarantine} "
        f"in {time.time() - started:.3f} s"  # benchmarks/featurize.py reads the time here
    )


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
