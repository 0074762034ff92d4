"""The Databricks job cluster adds to its runtime only what the runtime lacks, and the jobs' imports
are all there.

The rule modelled: a PyPI library on a Databricks cluster is a `pip install` into the runtime's
own environment; pip replaces an installed package whose version does not satisfy a requirement of
what it installs (pip's resolver, "only-if-needed" upgrade strategy). The runtime's libraries:
`fruits.databricks_runtime` (transcribed from the release notes it cites). The requirements are
read from the installed packages' own metadata (`importlib.metadata`), at the locked versions.
"""

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from fruits import code_bundle, databricks
from fruits.config import ConfigError, Deployment, RunConfig
from fruits.databricks_runtime import JOB_LIBRARIES, RUNTIME, RUNTIME_LIBRARIES, RUNTIME_PINS
from fruits.spark_steps import pipeline_jobs
from fruits.wheelhouse import normalize, parse_lock
from localdev import lake

pytestmark = pytest.mark.unit

SPARK_JOBS = Path(__file__).resolve().parents[1] / "spark_jobs"
LOCK_TEXT = (SPARK_JOBS / code_bundle.REQUIREMENTS_LOCK).read_text()
LOCK = parse_lock(LOCK_TEXT)
# The distribution that provides each third-party module the jobs import.
DISTRIBUTION_OF = {
    "PIL": "pillow",
    "ai_edge_litert": "ai-edge-litert",
    "h5py": "h5py",
    "keras": "keras",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "tensorflow": "tensorflow",
}
SPARK = {"pyspark", "py4j"}  # the platform's own
CLUSTER_ONLY = set(parse_lock((SPARK_JOBS / "cluster-constraints.txt").read_text()))


def installed_libraries() -> dict[str, str]:
    run = RunConfig.build(
        {"run_date": "2026-11-25", "platform": "databricks"},
        lake.fruits_config("s3://fruits-lake/models/w.weights.h5", "e" * 64),
        Deployment(),
    )
    settings = databricks.job_settings(run, pipeline_jobs(run), "s3://b/code/x", LOCK_TEXT, 60)
    assert {c["new_cluster"]["spark_version"] for c in settings["job_clusters"]} == {RUNTIME}
    libraries = [lib for task in settings["tasks"] for lib in task["libraries"]]
    pins = {lib["pypi"]["package"] for lib in libraries if "pypi" in lib}
    return {normalize(pin.split("==")[0]): pin.split("==")[1] for pin in pins}


def imported_modules() -> set[str]:
    local = {path.stem for path in SPARK_JOBS.glob("*.py")}
    found = set()
    for path in SPARK_JOBS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - local - set(sys.stdlib_module_names) - SPARK - {"__future__"}


def test_the_job_cluster_installs_nothing_the_runtime_has_at_the_locked_versions():
    installed = installed_libraries()
    assert set(installed) == {normalize(name) for name in JOB_LIBRARIES}
    assert not set(installed) & RUNTIME_LIBRARIES
    assert all(version == LOCK[name][0] for name, version in installed.items())


def test_every_module_the_jobs_import_is_in_the_runtime_or_installed():
    provided = RUNTIME_LIBRARIES | set(installed_libraries())
    modules = imported_modules()
    assert modules - set(DISTRIBUTION_OF) == set(), "a new import: say which package provides it"
    assert {m for m in modules if DISTRIBUTION_OF[m] not in provided} == set()


def requirements_of(distribution: str) -> list[Requirement]:
    """Its requirements, read from the local venv, which holds the locked version (but for the
    cluster-only constraints of spark_jobs/cluster-constraints.txt)."""
    locked = metadata.version(distribution) == LOCK[normalize(distribution)][0]
    assert locked or normalize(distribution) in CLUSTER_ONLY, distribution
    return [
        req
        for req in map(Requirement, metadata.requires(distribution) or [])
        if req.marker is None or req.marker.evaluate({"python_version": "3.11", "extra": ""})
    ]


def replaced_by(distribution: str, also_installed: dict[str, str]) -> list[str]:
    """The runtime's packages pip would replace to install `distribution`."""
    return [
        f"{req} (runtime: {RUNTIME_PINS[name]})"
        for req in requirements_of(distribution)
        if (name := normalize(req.name)) in RUNTIME_PINS
        and name not in also_installed
        and RUNTIME_PINS[name] not in req.specifier
    ]


def test_installing_the_libraries_replaces_none_of_the_runtimes_packages():
    installed = installed_libraries()
    for name in installed:
        assert replaced_by(name, installed) == [], name
        missing = {normalize(r.name) for r in requirements_of(name)} - RUNTIME_LIBRARIES
        assert missing <= set(installed), f"{name} would pull {missing - set(installed)} unpinned"
    # Why the jobs use the runtime's TensorFlow on Databricks: installing the locked one would
    # replace the runtime's numpy and protobuf.
    assert replaced_by("tensorflow-cpu", installed) != []


@pytest.mark.parametrize("runtime", ["15.4.x-scala2.12", "16.4.x-cpu-ml-scala2.12"])
def test_a_runtime_whose_libraries_are_not_recorded_is_refused(runtime):
    with pytest.raises(ConfigError, match=f"databricks_spark_version='{runtime}'"):
        RunConfig.build(
            {"run_date": "2026-11-25", "platform": "databricks"},
            lake.fruits_config("s3://fruits-lake/models/w.weights.h5", "e" * 64)
            | {"databricks_spark_version": runtime},
            Deployment(),
        )
