"""The cluster's wheelhouse: the wheels of `spark_jobs/requirements.lock` for EMR's Python, in S3.

EMR's bootstrap action installs the lock from it with `pip --no-index --require-hashes --no-deps`
(spark_jobs/bootstrap/install_requirements.sh): a cluster start needs S3 only, no route to PyPI,
and installs the same bytes every night. The wheelhouse lives under the code prefix, named by the
lock's sha256 (fruits.code_bundle.wheelhouse_uri): a new lock is a new wheelhouse.

    python -m fruits.wheelhouse download   # after `make lock`: the wheels into .wheelhouse/, and
                                           # spark_jobs/wheelhouse.sha256 (which file of each pin)
    python -m fruits.wheelhouse upload --bucket <lake bucket> [--code-prefix code]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from fruits.code_bundle import REQUIREMENTS_LOCK, wheelhouse_uri

SPARK_JOBS = Path(__file__).resolve().parents[2] / "spark_jobs"
LOCK = SPARK_JOBS / REQUIREMENTS_LOCK
MANIFEST = SPARK_JOBS / "wheelhouse.sha256"  # `sha256sum` format: <sha256>  <wheel file>
LOCAL_WHEELHOUSE = Path(".wheelhouse")
# The cluster's Python: EMR 7 (Amazon Linux 2023, glibc 2.34), the Python 3.11 the bootstrap
# installs. Wheels built for glibc 2.28 or older run there (make lock resolves for 2.28 too).
PYTHON_VERSION, PYTHON_ABI = "3.11", "cp311"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def parse_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """A requirements lock as {normalized name: (version, its sha256 hashes)}."""
    locked: dict[str, tuple[str, set[str]]] = {}
    name = None
    for line in text.splitlines():
        if pin := PIN.match(line):
            name = normalize(pin.group(1))
            locked[name] = (pin.group(2), set())
        elif name and (digest := HASH.search(line)):
            locked[name][1].add(digest.group(1))
    return locked


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(lock: Path, folder: Path) -> dict[str, str]:
    """The wheels of the lock that pip would install on the cluster, checked against its hashes.

    `--isolated`: the machine's own pip configuration (another index, constraints) must not
    change which files the cluster gets."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--isolated", "download", "--quiet"),
            *("--no-deps", "--require-hashes", "--only-binary=:all:"),
            *(f"--platform={platform}" for platform in PLATFORMS),
            *("--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", PYTHON_ABI),
            *("--index-url", "https://pypi.org/simple", "-r", str(lock), "-d", str(folder)),
        ],
        check=True,
    )
    return {wheel.name: sha256(wheel) for wheel in sorted(folder.glob("*.whl"))}


def read_manifest(text: str) -> dict[str, str]:
    return {name: digest for digest, name in (line.split() for line in text.splitlines() if line)}


def write_manifest(wheels: dict[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(wheels.items()))


def upload(s3_hook, bucket: str, code_prefix: str, folder: Path) -> str:
    """Upload the manifest's wheels to the lock's wheelhouse unless it is there; return its URI."""
    uri = wheelhouse_uri(bucket, code_prefix, LOCK.read_bytes())
    prefix = uri.removeprefix(f"s3://{bucket}/")
    marker = f"{prefix}/{MANIFEST.name}"  # written last: its presence means the upload is complete
    if s3_hook.check_for_key(marker, bucket_name=bucket):
        return uri
    wheels = read_manifest(MANIFEST.read_text())
    for name, digest in wheels.items():
        path = folder / name
        if not path.exists() or sha256(path) != digest:
            raise SystemExit(f"{path} is missing or differs from {MANIFEST.name}: download again")
        s3_hook.load_file(str(path), f"{prefix}/{name}", bucket_name=bucket, replace=True)
    s3_hook.load_string(MANIFEST.read_text(), marker, bucket_name=bucket, replace=True)
    return uri


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fruits.wheelhouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("download", help="PyPI -> .wheelhouse/, and spark_jobs/wheelhouse.sha256")
    up = commands.add_parser(
        "upload", help=".wheelhouse/ -> s3://<bucket>/<code prefix>/wheelhouse/"
    )
    up.add_argument("--bucket", required=True, help="the lake bucket (fruits_config lake_bucket)")
    up.add_argument("--code-prefix", default="code", help="fruits_config code_prefix")
    up.add_argument("--aws-conn-id", default=None, help="an Airflow connection; default: AWS env")
    args = parser.parse_args(argv)
    folder = LOCAL_WHEELHOUSE / hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    if args.command == "download":
        MANIFEST.write_text(write_manifest(download(LOCK, folder)))
        print(f"{MANIFEST}: the lock's wheels, in {folder}")
        return
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    if not all((folder / name).exists() for name in read_manifest(MANIFEST.read_text())):
        download(LOCK, folder)
    uri = upload(S3Hook(aws_conn_id=args.aws_conn_id), args.bucket, args.code_prefix, folder)
    print(f"wheelhouse: {uri}")


if __name__ == "__main__":
    main()
