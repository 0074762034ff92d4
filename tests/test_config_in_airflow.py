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


def test_a_missing_connection_is_named(monkeypatch, pipeline_dag):
    import fruits_pipeline

    def get_connection(conn_id):
        if conn_id == "fruits_wasb":
            raise LookupError(conn_id)

    monkeypatch.setattr(fruits_pipeline.BaseHook, "get_connection", get_connection)
    fruits_pipeline.check_connections_exist("fruits_aws")
    with pytest.raises(ConfigError, match="connection 'fruits_wasb' is missing"):
        fruits_pipeline.check_connections_exist("fruits_aws", "fruits_wasb")


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
    others = {ti.state for ti in dag_run.get_task_instances() if ti.task_id != "resolve_config"}
    assert others <= {"upstream_failed", "skipped", "removed", None}
