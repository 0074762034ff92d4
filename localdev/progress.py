"""One line per task as a DAG run goes: when it starts, and when it ends with its duration.

`airflow dags test` writes its task instances to the metadata database as it runs them; a thread
reads them from that SQLite file every second, read-only, and prints what changed since the last
look. Reading the database (not the log) keeps this independent of log formats, and shows the
same states the Airflow UI would.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# A task instance in one of these states will not change again in this try.
ENDED = {"success", "failed", "skipped", "upstream_failed", "removed", "up_for_retry"}
QUIET = {"skipped", "upstream_failed", "removed"}  # said together, on one line per look

TASK_INSTANCES = """
    SELECT task_id, map_index, state, start_date, end_date, try_number
    FROM task_instance
    WHERE dag_id = ? AND run_id = (
        SELECT run_id FROM dag_run WHERE dag_id = ? AND id > ? ORDER BY id DESC LIMIT 1)
"""


@dataclass(frozen=True)
class TaskState:
    state: str | None
    start: datetime | None
    end: datetime | None
    try_number: int = 1


Snapshot = dict[str, TaskState]  # task id ("group.task", "[i]" for a mapped one) -> state


def _utc(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _seconds(task: TaskState) -> str:
    if task.start and task.end:
        return f"{(task.end - task.start).total_seconds():.1f} s"
    return "?"


def progress_lines(before: Snapshot, now: Snapshot) -> list[str]:
    """What changed between two looks at a run's task instances, as lines to print."""
    lines, quiet = [], {}
    for name, task in sorted(now.items(), key=lambda item: (item[1].start or _far(), item[0])):
        seen = before.get(name)
        if seen == task or task.state in (None, "none", "scheduled", "queued"):
            continue
        try_note = f" (try {task.try_number})" if task.try_number > 1 else ""
        starting = task.state == "running" and (
            seen is None or seen.state != "running" or seen.try_number != task.try_number
        )
        if starting:
            lines.append(f"start   {name}{try_note}")
        elif task.state in QUIET:
            if seen is None or seen.state != task.state:
                quiet.setdefault(task.state, []).append(name)
        elif task.state == "success" and (seen is None or seen.state != "success"):
            lines.append(f"done    {name}  {_seconds(task)}")
        elif task.state == "failed" and (seen is None or seen.state != "failed"):
            lines.append(f"FAILED  {name}  after {_seconds(task)}")
        elif task.state == "up_for_retry" and (seen is None or seen.state != "up_for_retry"):
            lines.append(f"retry   {name}  failed try {task.try_number} after {_seconds(task)}")
        elif task.state == "deferred" and (seen is None or seen.state != "deferred"):
            lines.append(f"waiting {name}  (deferred)")
    for state, names in quiet.items():
        lines.append(f"{state.replace('_', ' '):8}{', '.join(names)}")
    return lines


def _far() -> datetime:
    return datetime.max.replace(tzinfo=timezone.utc)


def read_snapshot(database: Path, dag_id: str, after_run_id: int) -> Snapshot:
    """The task instances of the newest run of `dag_id` created after dag_run.id `after_run_id`."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute(TASK_INSTANCES, (dag_id, dag_id, after_run_id)).fetchall()
    return {
        (task_id if map_index < 0 else f"{task_id}[{map_index}]"): TaskState(
            state, _utc(start), _utc(end), try_number or 1
        )
        for task_id, map_index, state, start, end, try_number in rows
    }


def newest_run_id(database: Path, dag_id: str) -> int:
    """The id of the newest run of `dag_id` already in the database (0 if none)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        (newest,) = db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM dag_run WHERE dag_id = ?", (dag_id,)
        ).fetchone()
    return newest


class ProgressPrinter(threading.Thread):
    """Prints the run's progress every `interval` seconds until stopped; `lines` keeps it all."""

    def __init__(
        self,
        database: Path,
        dag_id: str,
        emit: Callable[[str], None] = print,
        interval: float = 1.0,
    ) -> None:
        super().__init__(name="dag-run-progress", daemon=True)
        self.database, self.dag_id, self.emit, self.interval = database, dag_id, emit, interval
        self.after_run_id = newest_run_id(database, dag_id)  # earlier runs of the same date
        self.lines: list[str] = []
        self._stopped = threading.Event()
        self._started_at = time.monotonic()
        self._seen: Snapshot = {}

    def look(self) -> None:
        try:
            now = read_snapshot(self.database, self.dag_id, self.after_run_id)
        except sqlite3.OperationalError:  # the run is writing: look again next time
            return
        elapsed = time.monotonic() - self._started_at
        for line in progress_lines(self._seen, now):
            self.lines.append(line)
            self.emit(f"  [{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {line}")
        self._seen = now

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.look()

    def stop(self) -> None:
        self._stopped.set()
        self.join()
        self.look()  # what ended since the last look
