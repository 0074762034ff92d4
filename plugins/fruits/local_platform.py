"""The local platform: the same Spark job, the same arguments, Spark in local mode.

Spark cannot read `s3://` here (no Hadoop S3 connector can be installed offline), so a job's S3
inputs are staged through the Amazon provider's S3Hook into a local mirror of the lake
(`<scratch>/lake/<bucket>/<key>`), `spark-submit` runs the code bundle downloaded from its
content-addressed prefix, and the outputs are uploaded back, replacing what their prefix held.
The job's arguments are the EMR step's, with each URI swapped for its place in the mirror: the
same paths every run, so a re-run writes the same bytes. A job's caches (the converted model,
each night's PCA statistics) live in the lake as on EMR: staged before, and what the job added
or changed uploaded after.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fruits.lake import clear_prefix, is_listing_noise, split_s3_uri
from fruits.spark_sizing import task_slots
from fruits.spark_steps import SparkJob

log = logging.getLogger(__name__)
HADOOP_SIDE_FILES = (".crc",)  # checksums Hadoop's local filesystem writes next to each file
# At INFO, Spark logs a line per file it reads, one per image: lines the task log drops anyway,
# which cost the featurize job 2% of its time.
LOCAL_SPARK_OPTIONS = ("--driver-memory", "4g", "--conf", "spark.log.level=WARN")


def run_job(job: SparkJob, code_uri: str, s3_hook, scratch_root: str) -> None:
    mirror = Path(scratch_root, "lake")
    mirror.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fruits-{job.name}-", dir=scratch_root) as scratch:
        code = download(s3_hook, code_uri, Path(scratch, "code"))
        inputs = {flag: stage(s3_hook, uri, mirror) for flag, uri in job.inputs.items()}
        caches = {
            flag: stage(s3_hook, uri, mirror, missing_ok=True) for flag, uri in job.caches.items()
        }
        cached = {flag: digests(path) for flag, path in caches.items()}
        outputs = {flag: empty_folder(mirrored(uri, mirror)) for flag, uri in job.outputs.items()}
        staged = SparkJob(
            job.name,
            inputs={flag: str(path) for flag, path in inputs.items()},
            outputs={flag: str(path) for flag, path in outputs.items()},
            options=job.options,
            caches={flag: str(path) for flag, path in caches.items()},
        )
        command = staged.spark_submit(str(code), *local_spark_options())
        spark_submit(command, log.info, job.name)
        for flag, uri in job.outputs.items():
            upload_replacing(s3_hook, outputs[flag], uri)
        for flag, uri in job.caches.items():
            upload_changed(s3_hook, caches[flag], uri, cached[flag])


def local_master(cores: int | None = None) -> str:
    """Spark local mode with the platforms' task slots per core (this machine's cores)."""
    return f"local[{task_slots(cores or os.cpu_count() or 1)}]"


def local_spark_options() -> tuple[str, ...]:
    """How the local platform (and `make featurize`) runs spark-submit."""
    return ("--master", local_master(), *LOCAL_SPARK_OPTIONS)


def mirrored(uri: str, mirror: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    return mirror / bucket / key


def empty_folder(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def stage(s3_hook, uri: str, mirror: Path, missing_ok: bool = False) -> Path:
    """The object or prefix at its place in the mirror, as S3 holds it now (nothing stale).

    A prefix is synced, not downloaded anew: pca and classify read the lake's whole `features/`
    and `moments/` roots (Spark reads only the partitions it needs; staging cannot know which),
    and the nights before are in the mirror already, so a night downloads what changed since.
    """
    target = mirrored(uri, mirror)
    bucket, key = split_s3_uri(uri)
    if key and s3_hook.check_for_key(key, bucket_name=bucket):
        shutil.rmtree(target, ignore_errors=True)
        return download_object(s3_hook, bucket, key, target)
    folder = key.rstrip("/") + "/"
    objects = {
        item["Key"][len(folder) :]: item
        for item in s3_hook.iter_file_metadata(prefix=folder, bucket_name=bucket)
        if not is_listing_noise(item["Key"])
    }
    if not objects and not missing_ok:
        raise FileNotFoundError(f"nothing under {uri}")
    index = mirror / ".synced" / f"{bucket}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    sync_folder(s3_hook, bucket, objects, target, index)
    return target


def sync_folder(s3_hook, bucket: str, objects: dict[str, dict], target: Path, index: Path) -> None:
    """Make `target` hold exactly `objects` (relative name -> S3's listing entry): download those
    whose ETag or size differs from what the index says the file holds, or whose file changed
    since (a job writes into its caches), and remove the rest."""
    if target.is_file():
        target.unlink()
    target.mkdir(parents=True, exist_ok=True)
    known = json.loads(index.read_text()) if index.is_file() else {}
    for path in [p for p in target.rglob("*") if p.is_file()]:
        if path.relative_to(target).as_posix() not in objects:
            path.unlink()  # gone from S3, or a file a job wrote here (Hadoop's .crc)
    held = {}
    for relative, item in sorted(objects.items()):
        path, version = target / relative, [item["ETag"], item["Size"]]
        if not (path.is_file() and known.get(relative) == [*version, *file_stamp(path)]):
            download_object(s3_hook, bucket, item["Key"], path)
        held[relative] = [*version, *file_stamp(path)]
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps(held))


def file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def upload_changed(s3_hook, folder: Path, uri: str, before: dict[str, str]) -> None:
    """Upload what the job added to a cache or changed in it; a cache is never pruned here."""
    bucket, key = split_s3_uri(uri)
    for relative, digest in digests(folder).items():
        if before.get(relative) != digest and not relative.endswith(HADOOP_SIDE_FILES):
            target = f"{key.rstrip('/')}/{relative}"
            s3_hook.load_file(str(folder / relative), key=target, bucket_name=bucket, replace=True)


def spark_submit(command: list[str], echo: Callable[[str], None], name: str) -> None:
    """Run spark-submit from this virtualenv; its output goes to the task log as it comes."""
    executable = Path(sys.executable).with_name("spark-submit")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    process = subprocess.Popen(
        [str(executable), *command[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        if " INFO " not in line:  # the few INFO lines Spark logs before WARN applies
            echo(line)
        tail = (tail + [line])[-40:]
    if process.wait() != 0:
        raise RuntimeError(
            f"spark job {name} failed (exit {process.returncode}); last lines:\n" + "\n".join(tail)
        )


def download(s3_hook, uri: str, target: Path) -> Path:
    """An object to the file `target`, or every object under a prefix into the folder `target`
    (same layout)."""
    bucket, key = split_s3_uri(uri)
    if key and s3_hook.check_for_key(key, bucket_name=bucket):
        return download_object(s3_hook, bucket, key, target)
    folder = key.rstrip("/") + "/"
    keys = [
        k
        for k in s3_hook.list_keys(bucket_name=bucket, prefix=folder) or []
        if not is_listing_noise(k)
    ]
    if not keys:
        raise FileNotFoundError(f"nothing under {uri}")
    for object_key in keys:
        download_object(s3_hook, bucket, object_key, target / object_key[len(folder) :])
    return target


def download_object(s3_hook, bucket: str, key: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    s3_hook.get_conn().download_file(bucket, key, str(target))
    return target


def upload_replacing(s3_hook, folder: Path, uri: str) -> None:
    """Make the prefix hold exactly the folder's files: a re-run leaves nothing of the last one."""
    bucket, key = split_s3_uri(uri)
    prefix = key.rstrip("/") + "/"
    clear_prefix(s3_hook, bucket, prefix)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.endswith(HADOOP_SIDE_FILES):
            continue
        relative = path.relative_to(folder).as_posix()
        s3_hook.load_file(str(path), key=prefix + relative, bucket_name=bucket, replace=True)


if __name__ == "__main__":  # `make featurize` runs spark-submit with these options
    print(" ".join(local_spark_options()))
