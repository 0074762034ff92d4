"""Which night a run processes: the date whose photos it reads, from how the run was started."""

from __future__ import annotations

from datetime import datetime, timezone


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
