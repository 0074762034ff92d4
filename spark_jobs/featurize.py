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
import hashlib
import re
import sys
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

import backbone
import decoding
from backbone import (
    FEATURE_SIZE,
    KerasBackbone,
    LoadedWeights,
    Storage,
    TFLiteBackbone,
    load_weights_on_driver,
    make_backbone,
    tensorflow_version,
)
from decoding import decode_image, describe_error

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
SPLIT_FOLDERS = ("Training", "Test")
# No photo is larger (a 200 Mpx JPEG is 20 to 60 MB); a Python worker holds one at a time.
MAX_FILE_BYTES = 256 * 2**20
# Photos' bytes per Spark partition, hence at most per Arrow batch in a Python worker (one larger
# photo gets a partition of its own). Spark 3.5 bounds Arrow batches by rows only: 64 rows of
# 200 Mpx photos would be 2 to 4 GB.
MAX_PARTITION_BYTES = 64 * 2**20
# Rows per Arrow batch handed to a Python worker.
ARROW_BATCH_ROWS = 64

# What featurize_batch returns for each image (its features or an error), and the part of it the
# workers give Spark: the featurized images (the others reach the driver via UnreadableImages).
RESULT_SCHEMA = pa.schema(
    [("path", pa.string()), ("features", pa.list_(pa.float32())), ("error", pa.string())]
)
FEATURIZED_DDL = "path string, features array<float>"


# --------------------------------------------------------------------------------------------
# The workers: decode a batch of photos, run the model, return features or errors
# --------------------------------------------------------------------------------------------


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
    jobio.ship_to_workers(spark, backbone, decoding)  # what the workers' code calls

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
