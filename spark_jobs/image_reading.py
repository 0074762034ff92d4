"""Reading the photos through Spark, quirks included: what `binaryFile` skips, refuses or
mis-parses, and how every listed photo is still read or given a reason.

The job lists the input itself (jobio.list_files, the file system's own listing), reads nearly
every photo in one bulk read, and reads the few that bulk read leaves out (folders whose names
start with '_' or '.') by their explicit paths; what Spark cannot read at all is named with
the reason.
"""

from __future__ import annotations

import re
from functools import reduce
from urllib.parse import unquote, urlsplit

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, IllegalArgumentException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import jobio

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
# No photo is larger (a 200 Mpx JPEG is 20 to 60 MB); a Python worker holds one at a time.
MAX_FILE_BYTES = 256 * 2**20
# Photos' bytes per Spark partition, hence at most per Arrow batch in a Python worker (one larger
# photo gets a partition of its own). Spark 3.5 bounds Arrow batches by rows only: 64 rows of
# 200 Mpx photos would be 2 to 4 GB.
MAX_PARTITION_BYTES = 64 * 2**20
# Rows per Arrow batch handed to a Python worker.
ARROW_BATCH_ROWS = 64


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
    array, not `DataFrame.inputFiles()`, which fetches it one py4j call per file: its length is
    one call, and its paths are only needed when the counts differ.
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


def configure_for_images(spark: SparkSession) -> None:
    """Spread the photos evenly over a few tasks per core and feed the UDF small Arrow batches.

    Spark's default 4 MB `openCostInBytes` makes a 5 KB photo weigh like a 4 MB file, so a
    night's photos became a few lopsided partitions. Counting each file at 8 KB and asking for at
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
