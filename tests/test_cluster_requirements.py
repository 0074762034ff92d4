"""EMR installs the same bytes every night: the jobs' requirements, locked with hashes for the
cluster's Python, from the wheelhouse in S3.

The rules modelled: pip's hash-checking mode (pip's "Secure installs" docs: with --require-hashes
every requirement must be pinned with `==` and carry `--hash`, and a file whose sha256 is not
listed is refused); wheel file names (PyPA "Binary distribution format" and "Platform
compatibility tags": `{name}-{version}(-{build})?-{python tag}-{abi tag}-{platform tag}.whl`); a
`manylinux_2_X` wheel runs on glibc >= 2.X (PEP 600): EMR 7 runs Amazon Linux 2023 (glibc 2.34).
"""

import re
from pathlib import Path

import pytest
from packaging import tags
from packaging.utils import parse_wheel_filename

from fruits import code_bundle, wheelhouse
from fruits.wheelhouse import normalize, parse_lock, read_manifest

pytestmark = pytest.mark.unit

SPARK_JOBS = Path(__file__).resolve().parents[1] / "spark_jobs"
INPUT = (SPARK_JOBS / "requirements.in").read_text()
LOCK = parse_lock((SPARK_JOBS / code_bundle.REQUIREMENTS_LOCK).read_text())
WHEELS = read_manifest(wheelhouse.MANIFEST.read_text())
BOOTSTRAP = (SPARK_JOBS / "bootstrap" / "install_requirements.sh").read_text()
# The tags pip accepts on EMR 7's Python 3.11 (x86_64, glibc 2.34), as `packaging.tags` derives
# them (PEP 425, PEP 600; manylinux2014/2010/1 are glibc 2.17/2.12/2.5).
EMR_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(34, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
EMR_TAGS = {
    *tags.cpython_tags(python_version=(3, 11), abis=["cp311"], platforms=EMR_PLATFORMS),
    *tags.compatible_tags(python_version=(3, 11), interpreter="cp311", platforms=EMR_PLATFORMS),
}


def input_pins() -> dict[str, str]:
    pins = [line.split("#", 1)[0].strip() for line in INPUT.splitlines()]
    return {normalize(p.split("==")[0]): p.split("==")[1] for p in pins if p}


def runs_on_emr(wheel: str) -> bool:
    return bool(parse_wheel_filename(wheel)[3] & EMR_TAGS)


def test_the_lock_pins_every_package_with_its_hashes_and_keeps_the_inputs_versions():
    assert LOCK, "no pins parsed"
    for name, (version, hashes) in LOCK.items():
        assert version and hashes, f"{name} is not pinned with ==version and --hash=sha256:"
    for name, version in input_pins().items():
        assert LOCK[name][0] == version, f"the lock moved {name} from {version}"


def test_the_wheelhouse_holds_one_cp311_manylinux_x86_64_wheel_per_pin_with_a_locked_hash():
    by_package = {}
    for wheel, digest in WHEELS.items():
        name, version, _, _ = parse_wheel_filename(wheel)
        by_package.setdefault(normalize(name), []).append(wheel)
        assert str(version) == LOCK[normalize(name)][0], wheel
        assert digest in LOCK[normalize(name)][1], f"{wheel}: its sha256 is not in the lock"
        assert runs_on_emr(wheel), f"{wheel} does not run on EMR 7's Python 3.11 (x86_64)"
    assert sorted(by_package) == sorted(LOCK)
    assert all(len(wheels) == 1 for wheels in by_package.values()), by_package


def test_the_wheel_tag_rule_refuses_what_emr_cannot_run():
    assert runs_on_emr("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert runs_on_emr("six-1.17.0-py2.py3-none-any.whl")
    assert not runs_on_emr("numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert not runs_on_emr("numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.whl")
    assert not runs_on_emr("numpy-1.26.4-cp311-cp311-macosx_11_0_arm64.whl")
    assert not runs_on_emr("x-1.0-cp311-cp311-manylinux_2_39_x86_64.whl")  # newer glibc


def test_the_bootstrap_installs_the_lock_from_s3_with_hashes_only():
    install = re.search(r'"\$venv/bin/pip" install (.*?)(?<!\\)\n', BOOTSTRAP, re.S)
    assert install, "no pip install of the lock in the bootstrap action"
    flags = install.group(1).replace("\\\n", " ").split()
    for flag in ("--require-hashes", "--no-deps", "--no-index", "--find-links"):
        assert flag in flags
    assert flags[flags.index("-r") + 1].endswith('requirements.lock"')
    # Nothing else is installed from an index (no `pip install --upgrade pip` from PyPI).
    assert BOOTSTRAP.count('pip" install') == 1


def test_the_cluster_gets_the_bundles_lock_and_its_wheelhouse():
    files = code_bundle.bundle_files(SPARK_JOBS)
    assert code_bundle.REQUIREMENTS_LOCK in files
    lock = files[code_bundle.REQUIREMENTS_LOCK]
    uri = code_bundle.wheelhouse_uri("fruits-lake", "code", lock)
    assert uri.startswith("s3://fruits-lake/code/wheelhouse/")
    assert uri != code_bundle.wheelhouse_uri("fruits-lake", "code", lock + b"# changed\n")
