"""The DAG on platform databricks: the job payload against the Jobs API's models, then whole runs
over HTTP against a local stub of the Jobs API, moto (S3) and Azurite."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from fake_cloud import RUN_DATE, SECRET_KEY, expected_export, published, seeded_cloud, write_outputs
from fake_databricks import FakeDatabricks

pytestmark = pytest.mark.dag

REPO = Path(__file__).resolve().parents[1]
CODE = "s3://fruits-lake/code/abc"
TOKEN = "dapi-fruits-Secret-Token-5e1f"  # recognisable: must not be written anywhere


# --- the payload --------------------------------------------------------------------------------


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
    """Also: Databricks started the run but its reply to run-now was lost. The hook sends
    run-now again with the same idempotency token, and Databricks answers with the run it
    started, not a second run and cluster (Jobs API 2.2 run-now: idempotency_token)."""
    endpoints, s3 = cloud
    workspace = Workspace(s3)
    with FakeDatabricks(TOKEN, workspace, lost_run_now_replies=1) as stub:
        dag_run, states = run_dag(pipeline_dag, stub, monkeypatch)
        assert dag_run.state == "success", states
        first, retried = stub.run_now_tokens
        assert first == retried and first
        assert len(stub.runs) == 1
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
        assert copied == expected_export() | {"run/_EXPORT_MANIFEST.json"}

        # A second run of the date resets the same job (no second job) and runs it again.
        dag_run, states = run_dag(pipeline_dag, stub, monkeypatch)
        assert dag_run.state == "success", states
        assert len(stub.jobs) == 1 and ("POST", "/api/2.2/jobs/reset") in stub.calls
        assert len(stub.runs) == 2  # another Airflow run, another token
        assert len(set(stub.run_now_tokens)) == 2


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
        assert states["databricks.release_databricks_run"] == "success"  # after a failed run-now
        assert stub.cancelled == []  # the run had ended: nothing to cancel
        (run,) = stub.runs.values()
        assert run.task_states["classify"]["result_state"] == "UPSTREAM_FAILED"
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "something broke in pca" in logged  # the task's own error, in the task log
    assert TOKEN not in logged and SECRET_KEY not in logged


def test_a_timed_out_run_is_cancelled_by_the_teardown(pipeline_dag, cloud, monkeypatch):
    """run-now stops watching a run that holds on (its execution_timeout): the teardown, which
    runs after the failed task, cancels the run and its job cluster. Deferrable (the default),
    the timeout is the trigger's and nothing calls the operator's on_kill (airflow-core
    jobs/triggerer_job_runner.py; task-sdk execution_time/task_runner.py calls on_kill only for
    a timeout of the task's own process): modelled here by a no-op on_kill on a task that polls
    in its process, as dag.test runs a trigger with no timeout."""
    run_now = pipeline_dag.get_task("databricks.run_on_databricks")
    monkeypatch.setattr(run_now, "deferrable", False)
    monkeypatch.setattr(run_now, "execution_timeout", timedelta(seconds=8))
    monkeypatch.setattr(run_now, "on_kill", lambda: None)
    with FakeDatabricks(TOKEN, Workspace(cloud[1]), hold_running=True) as stub:
        dag_run, states = run_dag(pipeline_dag, stub, monkeypatch)
        assert dag_run.state == "failed", states
        assert states["databricks.run_on_databricks"] == "failed"
        assert states["databricks.release_databricks_run"] == "success"
        (run,) = stub.runs.values()
        assert stub.cancelled == [run.run_id]  # by the teardown: nothing else cancels
        assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "CANCELED")
        release = dag_run.get_task_instance("databricks.release_databricks_run")
        assert f"run {run.run_id} was RUNNING: cancelled" in str(release.xcom_pull())


def test_a_missing_databricks_connection_fails_before_anything_is_created(
    pipeline_dag, cloud, monkeypatch
):
    monkeypatch.delenv("AIRFLOW_CONN_FRUITS_DATABRICKS", raising=False)
    dag_run = pipeline_dag.test(logical_date=RUN_DATE, run_conf={"platform": "databricks"})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed"
    assert states["resolve_config"] == "failed"
    assert states["databricks.define_databricks_job"] == "upstream_failed"
