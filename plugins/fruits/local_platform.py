"""The local platform: the same Spark job, the same arguments, Spark in local mode.

Spark cannot read `s3://` here (no Hadoop S3 connector can be installed offline), so a job's
S3 inputs are staged to a scratch folder through the Amazon provider's S3Hook, `spark-submit`
runs the code bundle downloaded from its content-addressed prefix, and the outputs are uploaded
back, replacing what the prefix held. The job's arguments are the EMR step's, with each URI
swapped for its staged copy.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fruits.lake import clear_prefix, is_listing_noise, split_s3_uri
from fruits.spark_steps import SparkJob

log = logging.getLogger(__name__)
HADOOP_SIDE_FILES = (".crc",)  # checksums Hadoop's local filesystem writes next to each file
# At INFO, Spark logs a line per file it reads, one per image: lines the task log drops anyway,
# which cost the featurize job 2% of its time.
LOCAL_SPARK_OPTIONS = ("--driver-memory", "4g", "--conf", "spark.log.level=WARN")


def run_job(job: SparkJob, code_uri: str, s3_hook, scratch_root: str) -> None:
    Path(scratch_root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fruits-{job.name}-", dir=scratch_root) as scratch:
        root = Path(scratch)
        code = download(s3_hook, code_uri, root / "code")
        local_inputs = {
            flag: download(s3_hook, uri, root / "in" / flag.strip("-"))
            for flag, uri in job.inputs.items()
        }
        local_outputs = {flag: root / "out" / flag.strip("-") for flag in job.outputs}
        # Caches stay on this machine, beside the scratch folders, from one run to the next.
        local_caches = {flag: Path(scratch_root, "caches", flag.strip("-")) for flag in job.caches}
        staged = SparkJob(
            job.name,
            inputs={flag: str(path) for flag, path in local_inputs.items()},
            outputs={flag: str(path) for flag, path in local_outputs.items()},
            options=job.options,
            caches={flag: str(path) for flag, path in local_caches.items()},
        )
        command = staged.spark_submit(str(code), "--master", "local[*]", *LOCAL_SPARK_OPTIONS)
        spark_submit(command, log.info, job.name)
        for flag, uri in job.outputs.items():
            upload_replacing(s3_hook, local_outputs[flag], uri)


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
    """An object to target/<name>, or every object under a prefix into target/ (same layout)."""
    bucket, key = split_s3_uri(uri)
    if key and s3_hook.check_for_key(key, bucket_name=bucket):
        target.mkdir(parents=True, exist_ok=True)
        path = target / key.rsplit("/", 1)[-1]
        s3_hook.get_conn().download_file(bucket, key, str(path))
        return path
    folder = key.rstrip("/") + "/"
    keys = [
        k
        for k in s3_hook.list_keys(bucket_name=bucket, prefix=folder) or []
        if not is_listing_noise(k)
    ]
    if not keys:
        raise FileNotFoundError(f"nothing under {uri}")
    for object_key in keys:
        path = target / object_key[len(folder) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3_hook.get_conn().download_file(bucket, object_key, str(path))
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
