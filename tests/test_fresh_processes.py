"""What a new process gets: a run's default scratch folder, the library archive a cluster worker
imports from, the wheel pip installs on Databricks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from fruits import code_bundle
from fruits.config import Deployment

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


def test_the_local_scratch_folder_outlives_a_run_by_default():
    # It keeps the converted-model cache: a fresh temporary folder would convert on every run.
    # Each run is a new process: the default must be the README's `<system temp>/fruits-scratch`
    # in this interpreter and in a fresh one (a per-process temporary folder would differ).
    documented = str(Path(tempfile.gettempdir(), "fruits-scratch"))
    fresh = subprocess.run(
        [sys.executable, "-c", "from fruits.config import Deployment as D; "
         "print(D.from_env({}).scratch_dir)"],
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Deployment.from_env({}).scratch_dir == fresh.stdout.strip() == documented
    assert Deployment.from_env({"FRUITS_SCRATCH_DIR": "/data/x"}).scratch_dir == "/data/x"


def test_the_library_archive_carries_every_module_but_the_jobs(tmp_path):
    # A module added to spark_jobs/ reaches the cluster with no change on the Airflow side.
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from fruits.code_bundle import bundle_files
    from fruits.spark_steps import JOB_ORDER, LIBRARY_ZIP, ON_DEMAND_JOBS

    spark_jobs = Path(__file__).resolve().parents[1] / "spark_jobs"
    archive = tmp_path / "fruits_jobs.zip"
    archive.write_bytes(bundle_files(spark_jobs)[LIBRARY_ZIP])
    scripts = {f"{job}.py" for job in (*JOB_ORDER, *ON_DEMAND_JOBS)}
    modules = {p.name for p in spark_jobs.glob("*.py")} - scripts
    with zipfile.ZipFile(archive) as opened:
        assert {n for n in opened.namelist() if n.endswith(".py")} == modules
    # Importable from the archive alone, as Spark's --py-files puts it on a worker's path.
    names = sorted(m[: -len(".py")] for m in modules)
    code = (
        f"import sys; sys.path[:0] = [{str(archive)!r}]; import {', '.join(names)}; "
        f"print({names[0]}.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(archive))


def bundle_built_at(when: float, folder: Path, monkeypatch) -> dict[str, bytes]:
    """The bundle of a copy of spark_jobs/ whose files date from `when`, built with the clock
    (and SOURCE_DATE_EPOCH) at `when`."""
    shutil.copytree(REPO / "spark_jobs", folder, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (when, when))
    localtime, gmtime = time.localtime, time.gmtime
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: when)
        clock.setattr(time, "time_ns", lambda: int(when * 1e9))
        clock.setattr(
            time, "localtime", lambda secs=None: localtime(when if secs is None else secs)
        )
        clock.setattr(time, "gmtime", lambda secs=None: gmtime(when if secs is None else secs))
        clock.setenv("SOURCE_DATE_EPOCH", str(int(when)))
        return code_bundle.bundle_files(folder)


def test_the_bundle_ships_jobio_as_an_installable_reproducible_wheel(tmp_path, monkeypatch):
    # Built years apart (zip times have a 2 s resolution): the same bytes, so the same hash.
    files = bundle_built_at(1_700_000_000, tmp_path / "then", monkeypatch)
    assert bundle_built_at(1_800_000_007, tmp_path / "later", monkeypatch) == files
    wheel = tmp_path / Path(code_bundle.LIBRARY_WHEEL).name
    wheel.write_bytes(files[code_bundle.LIBRARY_WHEEL])
    assert zipfile.ZipFile(wheel).testzip() is None
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    assert (target / "jobio.py").read_bytes() == (REPO / "spark_jobs" / "jobio.py").read_bytes()


PARSE_DAG = """
import os, sys
from airflow.dag_processing.dagbag import DagBag
os.environ["FRUITS_SPARK_JOBS_DIR"] = sys.argv[2]
moved = DagBag(sys.argv[1])
(module,) = [m for n, m in sys.modules.items() if n.endswith("fruits_pipeline")]
print("with the setting:", moved.import_errors or module.SPARK_JOBS_DIR)
del os.environ["FRUITS_SPARK_JOBS_DIR"]
print("without:", DagBag(sys.argv[1]).import_errors)
print("DAG files:", sorted(os.path.relpath(f, sys.argv[1]) for f in moved.file_last_changed))
"""


def test_the_dag_parses_alone_in_its_folder_with_the_jobs_elsewhere(tmp_path):
    """MWAA's shape: only the dags folder is synced, so the jobs go inside it, where the setting
    says (dags/.airflowignore keeps them from being parsed as DAG files). Without the setting the
    parse fails naming it (the default, spark_jobs/ next to dags/, is not there)."""
    dags = tmp_path / "dags"
    jobs = dags / "spark_jobs"
    shutil.copytree(REPO / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "spark_jobs", jobs, ignore=shutil.ignore_patterns("__pycache__"))
    printed = subprocess.run(
        [sys.executable, "-c", PARSE_DAG, str(dags), str(jobs)],
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
        capture_output=True, text=True, cwd=tmp_path, check=True,
    ).stdout  # fmt: skip
    assert f"with the setting: {jobs}\n" in printed
    (without,) = [line for line in printed.splitlines() if line.startswith("without:")]
    assert "FRUITS_SPARK_JOBS_DIR=" in without and "missing there: featurize.py" in without
    assert "DAG files: ['fruits_pipeline.py']" in printed  # no job script parsed as a DAG
