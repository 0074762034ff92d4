"""Shared fixtures: a local SparkSession, the shared real data and the pretrained weights."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

# What libraries learn by running a command when first imported, learnt before the unit-tier
# guard: `uname -p` (platform.processor(), cached; azure-identity's user agent), `file` on the
# interpreter (croniter, which Airflow's timetables import), lscpu (numpy.testing).
import croniter  # noqa: F401
import numpy.testing  # noqa: F401
import pytest
from cryptography.fernet import Fernet

import tiers
from localdev.emulators import airflow_home_env
from localdev.shared import PRETRAINED_WEIGHTS, SAMPLE_DIR

platform.processor()
REPO = Path(__file__).resolve().parents[1]

# Python workers must use this interpreter and find the job modules (the UDFs of an imported
# job module are pickled by reference). Set before any JVM starts.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "spark_jobs"), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]
).rstrip(os.pathsep)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# py4j logs an INFO line from a destructor at interpreter exit, after the log streams are closed:
# a "--- Logging error ---" traceback at the end of every run otherwise.
logging.getLogger("py4j").setLevel(logging.WARNING)

# Airflow reads its configuration when first imported: a private home with a SQLite database,
# this repository's dags/, no examples; EMR sensors poll every second in tests.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fruits-airflow-tests-"))
os.environ.update(
    {
        **airflow_home_env(AIRFLOW_HOME),
        # One Fernet key for this process and every `airflow` it starts: the first `airflow`
        # command writes a random one into airflow.cfg, which a process that had read its
        # configuration before would not have (connections' secrets would not decrypt).
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "FRUITS_POLL_INTERVAL_S": "1",
        "FRUITS_STEP_TIMEOUT_S": "120",
        "FRUITS_RETRY_DELAY_S": "1",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the tiers (a stable sort: each module keeps its order). Under pytest-xdist each
    worker collects, and the controller hands out modules in that order."""
    parallel = "PYTEST_XDIST_WORKER" in os.environ
    items.sort(key=lambda item: tiers.tier_rank((m.name for m in item.iter_markers()), parallel))


def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = tiers.tier_problem(item.nodeid, (m.name for m in item.iter_markers()))
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A unit test, its fixtures included, runs with the outside world refused."""
    if item.get_closest_marker("unit") is None:
        return (yield)
    with pytest.MonkeyPatch.context() as monkeypatch:
        tiers.forbid_outside_world(monkeypatch)
        return (yield)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("fruits-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        pytest.fail(f"shared sample not found at {SAMPLE_DIR} (set FRUITS_SHARED_DIR)")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def pretrained_weights() -> Path:
    if not PRETRAINED_WEIGHTS.is_file():
        pytest.fail(f"pretrained weights not found at {PRETRAINED_WEIGHTS}")
    return PRETRAINED_WEIGHTS


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """MobileNetV2 weights for 32x32 inputs from a fixed seed: fast runs of the real code path."""
    import keras

    import backbone

    keras.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("weights") / "random.weights.h5"
    backbone.build_keras_backbone(32).save_weights(path)
    return path


@pytest.fixture(scope="session")
def airflow_db():
    """An initialised Airflow metadata database (SQLite) for dag.test()."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def parsed_dag():
    """The DAG as the DAG processor parses it: no database needed (unit tier)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["fruits_pipeline"]


@pytest.fixture(scope="session")
def pipeline_dag(airflow_db, parsed_dag):
    """The DAG, ready for dag.test()."""
    return parsed_dag
