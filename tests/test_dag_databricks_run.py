"""The DAG on platform databricks: the job payload against the Jobs API's models, then whole runs
over HTTP against a local stub of the Jobs API, moto (S3) and Azurite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from functools import partial
from pathlib import Path

import pytest

from fake_cloud import RUN_DATE, SECRET_KEY, expected_export, published, seeded_cloud, write_outputs
from fake_databricks import FakeDatabricks, check_job_settings
from fruits import code_bundle, databricks, emr
from fruits.config import Deployment, RunConfig
from fruits.spark_steps import pipeline_jobs
from localdev import lake

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = (REPO / "spark_jobs" / "requirements.txt").read_text()
CODE = "s3://fruits-lake/code/abc"
TOKEN = "dapi-fruits-Secret-Token-5e1f"  # recognisable: must not be written anywhere


def config(**variable) -> RunConfig:
    return RunConfig.build(
        {"run_date": "2026-11-25", "platform": "databricks"},
        lake.fruits_config("s3://fruits-lake/models/w.weights.h5", "e" * 64, **variable),
        Deployment(),
    )


# --- the payload --------------------------------------------------------------------------------


def test_the_job_is_a_valid_jobs_api_request_running_the_emr_steps_arguments():
    run = config(databricks_instance_profile_arn="arn:aws:iam::1:instance-profile/fruits")
    jobs = pipeline_jobs(run)
    settings = databricks.job_settings(run, jobs, CODE, REQUIREMENTS, timeout_s=3600)

    check_job_settings(settings)  # every field known to the SDK's JobSettings model
    (cluster,) = settings["job_clusters"]
    assert cluster["new_cluster"]["spark_version"].startswith("15.4.")  # Spark 3.5
    assert cluster["new_cluster"]["aws_attributes"]["instance_profile_arn"].endswith("/fruits")
    tasks = settings["tasks"]
    assert [t["task_key"] for t in tasks] == ["featurize", "pca", "classify"]
    assert [t.get("depends_on") for t in tasks] == [
        None,
        [{"task_key": "featurize"}],
        [{"task_key": "pca"}],
    ]
    assert {t["job_cluster_key"] for t in tasks} == {cluster["job_cluster_key"]}
    for task, job in zip(tasks, jobs, strict=True):
        step = emr.step(job, CODE, 60)["HadoopJarStep"]["Args"]
        python_task = task["spark_python_task"]
        assert python_task["python_file"] == step[step.index("--py-files") + 2]
        assert python_task["parameters"] == step[step.index("--py-files") + 3 :]
        libraries = task["libraries"]
        assert {"whl": f"{CODE}/{code_bundle.LIBRARY_WHEEL}"} in libraries
        pins = {lib["pypi"]["package"] for lib in libraries if "pypi" in lib}
        assert pins == set(databricks.requirement_pins(REQUIREMENTS))
        assert "tensorflow-cpu==2.21.0" in pins and not any(p.startswith("pyspark") for p in pins)


def test_a_misspelled_field_is_refused_by_the_check():
    settings = databricks.job_settings(config(), pipeline_jobs(config()), CODE, REQUIREMENTS, 60)
    settings["tasks"][0]["job_cluster"] = settings["tasks"][0].pop("job_cluster_key")
    with pytest.raises(ValueError, match=r"tasks\[0\]\.job_cluster"):
        check_job_settings(settings)


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        (("timeout_seconds",), "sixty", r"timeout_seconds \('sixty' is not int\)"),
        (("max_concurrent_runs",), True, r"max_concurrent_runs \(True is not int\)"),
        (
            ("job_clusters", 0, "new_cluster", "num_workers"),
            "2.5",
            r"job_clusters\[0\]\.new_cluster\.num_workers \('2\.5' is not int\)",
        ),
        (
            ("tasks", 1, "spark_python_task", "parameters", 1),
            3,
            r"tasks\[1\]\.spark_python_task\.parameters\[1\] \(3 is not str\)",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_the_check(where, value, problem):
    wrong = settings()
    *parents, leaf = where
    container = wrong
    for key in parents:
        container = container[key]
    container[leaf] = value
    with pytest.raises(ValueError, match=problem):
        check_job_settings(wrong)


def test_the_stub_refuses_a_request_of_the_wrong_type_with_http_400():
    with FakeDatabricks(TOKEN, lambda task_key, parameters: None) as stub:
        request = urllib.request.Request(  # noqa: S310 (loopback URL)
            f"{stub.url}/api/2.2/jobs/run-now",
            json.dumps({"job_id": "one"}).encode(),
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 (loopback URL)
    assert refused.value.code == 400
    assert "job_id ('one' is not int)" in json.loads(refused.value.read())["message"]
    assert stub.runs == {}


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


# --- whole runs over HTTP -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, pretrained_weights):
    with seeded_cloud(tmp_path_factory.mktemp("cloud"), pretrained_weights) as endpoints_and_s3:
        yield endpoints_and_s3


class Workspace:
    """The stub's task player: writes each task's outputs to S3, or fails the chosen one."""

    def __init__(self, s3, failing_task: str | None = None):
        self.s3, self.failing_task, self.ran = s3, failing_task, []

    def __call__(self, task_key: str, parameters: list[str]) -> str | None:
        self.ran.append(task_key)
        if task_key == self.failing_task:
            return f"{task_key}.py: ValueError: something broke in {task_key}"
        write_outputs(self.s3, task_key, parameters)
        return None


def run_dag(pipeline_dag, stub, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FRUITS_DATABRICKS", stub.connection_json())
    dag_run = pipeline_dag.test(logical_date=RUN_DATE, run_conf={"platform": "databricks"})
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_a_successful_run_publishes_to_azure(pipeline_dag, cloud, monkeypatch):
    endpoints, s3 = cloud
    workspace = Workspace(s3)
    with FakeDatabricks(TOKEN, workspace) as stub:
        dag_run, states = run_dag(pipeline_dag, stub, monkeypatch)
        assert dag_run.state == "success", states
        assert workspace.ran == ["featurize", "pca", "classify"]
        assert states["databricks.run_on_databricks"] == "success"
        assert states["databricks.release_databricks_run"] == "success"
        assert stub.cancelled == []  # the run ended by itself: its job cluster is gone with it
        assert (
            states["emr.create_emr_cluster"] == states["local.run_featurize_locally"] == "skipped"
        )
        (run,) = stub.runs.values()
        assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS")
        assert ("POST", "/api/2.2/jobs/create") in stub.calls

        latest, copied = published(endpoints)
        assert copied == expected_export() | {"_EXPORT_MANIFEST.json"}

        # A second run of the date resets the same job (no second job) and runs it again.
        dag_run, states = run_dag(pipeline_dag, stub, monkeypatch)
        assert dag_run.state == "success", states
        assert len(stub.jobs) == 1 and ("POST", "/api/2.2/jobs/reset") in stub.calls
        assert len(stub.runs) == 2


def test_a_failing_task_fails_the_run_with_its_error(
    pipeline_dag, cloud, monkeypatch, caplog, capfd
):
    _, s3 = cloud
    workspace = Workspace(s3, failing_task="pca")
    with FakeDatabricks(TOKEN, workspace) as stub, caplog.at_level("INFO"):
        dag_run, states = run_dag(pipeline_dag, stub, monkeypatch)
        assert dag_run.state == "failed", states
        assert workspace.ran == ["featurize", "pca"]
        assert states["databricks.run_on_databricks"] == "failed"
        assert states["publish.copy_to_azure"] == "upstream_failed"
        assert states["databricks.release_databricks_run"] == "success"
        (run,) = stub.runs.values()
        assert run.task_states["classify"]["result_state"] == "UPSTREAM_FAILED"
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "something broke in pca" in logged  # the task's own error, in the task log
    assert TOKEN not in logged and SECRET_KEY not in logged


class TaskInstance:
    """The XComs as Airflow would hold them: pushed under the provider's own key by the DAG's
    run-now task; any other task id or key finds nothing, as `xcom_pull` would."""

    def __init__(self, xcoms: dict[tuple[str, str], object]):
        self.xcoms = xcoms

    def xcom_pull(self, task_ids, key):
        return self.xcoms.get((task_ids, key))


def test_the_teardown_cancels_a_run_airflow_stopped_watching(pipeline_dag, cloud, monkeypatch):
    from airflow.providers.databricks.operators.databricks import (
        XCOM_RUN_ID_KEY,
        DatabricksRunNowOperator,
    )

    import fruits_pipeline

    (run_now,) = [t for t in pipeline_dag.tasks if isinstance(t, DatabricksRunNowOperator)]
    assert run_now.do_xcom_push  # the provider pushes the run id only then
    with FakeDatabricks(TOKEN, Workspace(cloud[1]), hold_running=True) as stub:
        monkeypatch.setenv("AIRFLOW_CONN_FRUITS_DATABRICKS", stub.connection_json())
        run_id = stub.run_now(
            stub.handle("POST", "/api/2.2/jobs/create", {}, settings())[1]["job_id"], None
        )["run_id"]
        ti = TaskInstance({(run_now.task_id, XCOM_RUN_ID_KEY): run_id})

        # Called as the DAG calls it: with the arguments its task was given.
        arguments = pipeline_dag.get_task("databricks.release_databricks_run").op_args
        release = partial(fruits_pipeline.release_databricks_run.function, *arguments)
        assert "cancelled" in release(ti=ti)
        assert stub.cancelled == [run_id]
        assert "already ended" in release(ti=ti)
        assert stub.cancelled == [run_id]
        assert release(ti=TaskInstance({})) == "no run was submitted"


def settings() -> dict:
    return databricks.job_settings(config(), pipeline_jobs(config()), CODE, REQUIREMENTS, 60)


def test_a_missing_databricks_connection_fails_before_anything_is_created(
    pipeline_dag, cloud, monkeypatch
):
    monkeypatch.delenv("AIRFLOW_CONN_FRUITS_DATABRICKS", raising=False)
    dag_run = pipeline_dag.test(logical_date=RUN_DATE, run_conf={"platform": "databricks"})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed"
    assert states["resolve_config"] == "failed"
    assert states["databricks.define_databricks_job"] == "upstream_failed"
