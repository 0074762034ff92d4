"""Which night a run processes, and nights run one after the other, in date order.

Night D+1 refits PCA and the classifier over night D's statistics. The DAG's
`max_active_runs=1` does not cap a backfill, which runs up to its own `max_active_runs` (10 by
default over the REST API) at once (airflow/models/backfill.py `_create_backfill`; the scheduler
counts a backfill's runs against the backfill's limit). So each run's first task waits until
the run before it by logical date has finished.

It waits deferred, in the triggerer, with the standard provider's own `DagStateTrigger` (the one
`TriggerDagRunOperator` waits with): no worker slot is held, and there is no reschedule-mode
sensor, which Airflow 3.2-3.3 can mark failed while it waits when a poke's executor event is
processed after the next poke was queued (apache/airflow#71172, open).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.standard.triggers.external_task import DagStateTrigger
from airflow.sdk import BaseOperator


def run_date_of(form_date: str | None, logical_date: datetime | None, run_after: datetime) -> str:
    """The date whose photos a run processes: the run form's `run_date` if given, else the date
    of the run's logical date, else the date of its `run_after`, in UTC.

    A scheduled night (CronDataIntervalTimetable) has the logical date D 02:00 when it runs at
    D+1 02:00, so it processes D, the day that just ended; so does a backfill run of D. A run
    triggered through the REST API or `airflow dags trigger` has no logical date by default in
    Airflow 3: it processes the day of its `run_after` (when it was triggered to run).
    """
    if form_date:
        return str(form_date)
    moment = logical_date if logical_date is not None else run_after
    return moment.astimezone(timezone.utc).date().isoformat()


# A failed night before counts as finished: it is re-run by itself, later.
FINISHED_RUN_STATES = ("success", "failed")


class WaitForEarlierNights(BaseOperator):
    """Returns the run id of the night before (None if there is none), once it has finished."""

    def __init__(self, *, poll_interval_s: float, wait_timeout: timedelta, **kwargs: Any):
        super().__init__(**kwargs)
        self.poll_interval_s = poll_interval_s
        self.wait_timeout = wait_timeout

    def execute(self, context: Any) -> str | None:
        previous = context["ti"].get_previous_dagrun()  # by logical date; None without one
        if previous is None:
            self.log.info("No night before this one: nothing to wait for")
            return None
        if previous.state in FINISHED_RUN_STATES:
            self.log.info(
                "The night before, run %s, has finished: %s", previous.run_id, previous.state
            )
            return previous.run_id
        self.log.info(
            "Waiting for the night before, run %s (%s), to finish", previous.run_id, previous.state
        )
        self.defer(
            trigger=DagStateTrigger(
                dag_id=previous.dag_id,
                states=list(FINISHED_RUN_STATES),
                run_ids=[previous.run_id],
                poll_interval=self.poll_interval_s,
            ),
            method_name="night_before_finished",
            timeout=self.wait_timeout,
        )
        return None  # not reached: defer() raises

    def night_before_finished(self, context: Any, event: tuple[str, dict[str, Any]]) -> str:
        _, finished = event  # the trigger's data, with {run_id: state} of the run it watched
        (run_id,) = finished["run_ids"]
        self.log.info("The night before, run %s, has finished: %s", run_id, finished.get(run_id))
        return run_id
