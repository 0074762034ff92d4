"""The gate that keeps nights in date order under a backfill (`fruits.night_runs`), as Airflow
runs it: `execute` either returns at once or raises `TaskDeferred` (airflow/sdk/bases/operator.py
`BaseOperator.defer`), and the triggerer hands the trigger's event to the resume method. The
event's shape is the standard provider's `DagStateTrigger.run` under Airflow 3
(providers/standard/triggers/external_task.py: `(classpath, {**serialized, run_id: state})`).
Its behaviour under real services (a REST backfill of three dates) is in
test_airflow_services.py."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.standard.triggers.external_task import DagStateTrigger
from airflow.sdk.exceptions import TaskDeferred

from fruits.night_runs import WaitForEarlierNights

pytestmark = pytest.mark.unit

RUN_BEFORE = "backfill__2026-11-24T02:00:00+00:00"


def gate() -> WaitForEarlierNights:
    return WaitForEarlierNights(
        task_id="wait_for_earlier_nights", poll_interval_s=7, wait_timeout=timedelta(hours=23)
    )


def context_with(previous) -> dict:
    return {"ti": SimpleNamespace(get_previous_dagrun=lambda: previous)}


def night_before(state: str) -> SimpleNamespace:
    return SimpleNamespace(dag_id="fruits_pipeline", run_id=RUN_BEFORE, state=state)


def test_the_first_night_has_none_before_it():
    assert gate().execute(context_with(None)) is None


@pytest.mark.parametrize("state", ["success", "failed"])
def test_a_finished_night_before_lets_the_run_start(state):
    assert gate().execute(context_with(night_before(state))) == RUN_BEFORE


@pytest.mark.parametrize("state", ["running", "queued"])
def test_an_unfinished_night_before_defers_to_the_triggerer_until_it_ends(state):
    with pytest.raises(TaskDeferred) as deferred:
        gate().execute(context_with(night_before(state)))
    trigger = deferred.value.trigger
    assert isinstance(trigger, DagStateTrigger)
    assert trigger.dag_id == "fruits_pipeline" and trigger.run_ids == [RUN_BEFORE]
    assert sorted(trigger.states) == ["failed", "success"]  # a failed night ends the wait too
    assert trigger.poll_interval == 7
    assert deferred.value.method_name == "night_before_finished"
    assert deferred.value.timeout == timedelta(hours=23)


def test_the_triggers_event_resumes_the_run():
    classpath, data = DagStateTrigger(
        dag_id="fruits_pipeline", states=["success", "failed"], run_ids=[RUN_BEFORE]
    ).serialize()
    event = (classpath, {**data, RUN_BEFORE: "failed"})
    assert gate().night_before_finished({}, event) == RUN_BEFORE
