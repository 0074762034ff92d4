"""`make run` shows its progress: one line per task as it starts and as it ends, with its duration,
read from the metadata database while the run goes (localdev/progress.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from localdev.progress import ProgressPrinter, TaskState, progress_lines

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.unit
def test_a_task_is_announced_when_it_starts_and_when_it_ends_with_its_duration():
    running = {"setup.check_weights": TaskState("running", at(0), None)}
    done = {"setup.check_weights": TaskState("success", at(0), at(2.25))}
    assert progress_lines({}, running) == ["start   setup.check_weights"]
    assert progress_lines(running, running) == []  # nothing new: nothing said
    assert progress_lines(running, done) == ["done    setup.check_weights  2.2 s"]
    assert progress_lines(done, done) == []


@pytest.mark.unit
def test_failures_retries_and_skips_are_said_once():
    first = {"local.run_pca_locally": TaskState("running", at(0), None, try_number=1)}
    retry = {"local.run_pca_locally": TaskState("up_for_retry", at(0), at(30), try_number=1)}
    again = {"local.run_pca_locally": TaskState("running", at(40), None, try_number=2)}
    failed = {"local.run_pca_locally": TaskState("failed", at(40), at(41.5), try_number=2)}
    assert progress_lines(first, retry) == [
        "retry   local.run_pca_locally  failed try 1 after 30.0 s"
    ]
    assert progress_lines(retry, again) == ["start   local.run_pca_locally (try 2)"]
    assert progress_lines(again, failed) == ["FAILED  local.run_pca_locally  after 1.5 s"]
    skipped = {
        "emr.create_emr_cluster": TaskState("skipped", None, None),
        "databricks.run_on_databricks": TaskState("skipped", None, None),
    }
    assert progress_lines({}, skipped) == [
        "skipped databricks.run_on_databricks, emr.create_emr_cluster"
    ]
    assert progress_lines(skipped, skipped) == []


@pytest.mark.unit
def test_a_task_seen_only_once_ended_still_gets_its_line():
    # A task shorter than the polling interval is never seen running.
    quick = {"resolve_config": TaskState("success", at(0), at(0.4))}
    assert progress_lines({}, quick) == ["done    resolve_config  0.4 s"]


PROBE_DAG = """
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from airflow.sdk import dag, task

@task
def slow() -> int:
    time.sleep(2)
    return 1

@task.short_circuit
def stop_here(value: int) -> bool:
    return False

@task
def never(value: int) -> None:
    pass

@dag(schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False)
def fruits_progress_probe():
    value = slow()
    stop_here(value) >> never(value)

fruits_progress_probe()
"""


@pytest.mark.dag
def test_the_printer_follows_a_real_airflow_dags_test_run(airflow_db, tmp_path):
    """A real `airflow dags test` (as make run starts it) writing to the metadata database: the
    printer, polling it from its thread, says each task started before it says it ended, while
    the run goes."""
    (tmp_path / "probe.py").write_text(PROBE_DAG)
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path)}
    airflow = Path(sys.executable).with_name("airflow")
    shown: list[tuple[float, str]] = []
    printer = ProgressPrinter(
        airflow_db / "airflow.db",
        "fruits_progress_probe",
        emit=lambda line: shown.append((time.monotonic(), line)),
        interval=0.2,
    )
    printer.start()
    result = subprocess.run(
        [airflow, "dags", "test", "fruits_progress_probe"], env=env, capture_output=True, text=True
    )
    finished = time.monotonic()
    printer.stop()

    assert result.returncode == 0, result.stdout[-3000:]
    lines = [line.split("] ", 1)[1] for _, line in shown]
    print("\n".join(line for _, line in shown))
    assert lines.index("start   slow") < next(i for i, x in enumerate(lines) if "done    slow" in x)
    (done_slow,) = [x for x in lines if x.startswith("done    slow")]
    assert float(done_slow.split()[-2]) >= 2.0, lines  # it sleeps 2 s
    assert any(x.startswith("done    stop_here") for x in lines)
    assert "skipped never" in lines
    assert shown[0][0] < finished  # printed while the run went, not all at the end
