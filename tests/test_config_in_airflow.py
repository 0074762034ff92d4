"""The configuration as Airflow resolves it: connections looked up the way a task does, and a bad
setting failing a real run at once."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from fruits.config import ConfigError
from localdev import lake

pytestmark = pytest.mark.dag
VARIABLE = lake.fruits_config("s3://fruits-lake/models/mobilenet.weights.h5", "e" * 64)


CONNECTION_ATTRIBUTES = ("aws_conn_id", "wasb_conn_id", "databricks_conn_id")


def dag_function(dag, name: str):
    """A function of the DAG file as the DAG processor loaded it (under its own module name)."""
    return dag.get_task("resolve_config").python_callable.__globals__[name]


def connections_its_operators_use(dag, platform: str) -> set[str]:
    """Every connection id an operator of the DAG holds, in the tasks a run on `platform` runs
    (its own group, and everything outside the three platforms' groups)."""
    from fruits.config import PLATFORMS

    others = {p for p in PLATFORMS if p != platform}
    used = set()
    for task in dag.tasks:
        if task.task_id.split(".")[0] in others:
            continue
        given = getattr(task, "partial_kwargs", {})  # a mapped operator's fixed arguments
        for attribute in CONNECTION_ATTRIBUTES:
            used.add(given.get(attribute) or getattr(task, attribute, None))
    return used - {None}


@pytest.mark.parametrize("platform", ["emr", "local", "databricks"])
def test_each_platform_needs_the_connections_its_tasks_use(pipeline_dag, monkeypatch, platform):
    """What resolve_config checks is what the platform's operators hold, plus the lake's
    connection every @task reads S3 with; each missing one is named, found through Airflow's
    own lookup (AIRFLOW_CONN_<ID> variables, then the metadata database)."""
    from fruits.config import Deployment

    deployment = Deployment.from_env()
    needed = dag_function(pipeline_dag, "connections_needed")(platform)
    check = dag_function(pipeline_dag, "check_connections_exist")
    used = connections_its_operators_use(pipeline_dag, platform) | {deployment.aws_conn_id}
    assert set(needed) == used

    for conn_id in needed:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "http"}))
    check(*needed)
    for missing in needed:
        with monkeypatch.context() as without:
            without.delenv(f"AIRFLOW_CONN_{missing.upper()}")
            with pytest.raises(ConfigError, match=f"connection '{missing}' is missing"):
                check(*needed)


def test_a_configuration_error_fails_the_run_at_once_naming_the_setting(
    monkeypatch, pipeline_dag, capfd
):
    # A retry cannot fix a typo: resolve_config fails once, and nothing downstream starts.
    bad = {**VARIABLE, "emr_core_instance_count": "2"}
    monkeypatch.setenv("AIRFLOW_VAR_FRUITS_CONFIG", json.dumps(bad))
    dag_run = pipeline_dag.test(
        logical_date=datetime(2026, 11, 25, tzinfo=timezone.utc), run_conf={"platform": "emr"}
    )
    resolve = dag_run.get_task_instance("resolve_config")
    assert (dag_run.state, resolve.state, resolve.try_number) == ("failed", "failed", 1)
    assert "emr_core_instance_count='2' is invalid" in "".join(capfd.readouterr())
    before = ("wait_for_earlier_nights", "resolve_config")  # the gate ran: no night before it
    others = {ti.state for ti in dag_run.get_task_instances() if ti.task_id not in before}
    assert others <= {"upstream_failed", "skipped", "removed", None}
