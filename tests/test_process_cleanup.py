"""The services harness stops everything it started: the whole tree, orphans too, stubborn ones;
and it notices a component that died instead of waiting on runs it will never schedule."""

import os
import subprocess
import sys
import time
from contextlib import suppress

import psutil
import pytest

from airflow_services import AirflowServices, stop_all
from localdev.emulators import wait_until

pytestmark = pytest.mark.e2e

# A parent (like standalone) with a child that ignores SIGTERM, and a grandchild orphaned when
# its own parent exits (as a task's spark-submit JVM is when the task process dies first).
TREE = """
import os, signal, subprocess, sys, time
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", stubborn])
orphaner = (
    "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'import time; "
    "time.sleep(600)'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
)
print(subprocess.run([sys.executable, "-c", orphaner], capture_output=True, text=True).stdout)
time.sleep(600)
"""


def test_stop_all_ends_the_tree_and_its_orphans(tmp_path):
    marker = str(tmp_path / "airflow-home")
    parent = subprocess.Popen(
        [sys.executable, "-c", TREE],
        env={**os.environ, "AIRFLOW_HOME": marker},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    orphan = psutil.Process(int(parent.stdout.readline()))
    time.sleep(0.5)  # the stubborn child has set its handler
    started = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children(recursive=True)]
    assert orphan not in started  # out of the tree: only its AIRFLOW_HOME finds it
    assert len(started) == 2

    try:
        assert stop_all(parent.pid, marker, grace_s=2, term_s=1) == []
        assert not any(p.is_running() for p in [*started, orphan])
        assert parent.poll() is not None
    finally:  # should this test fail, it leaves nothing behind either
        for proc in [*started, orphan]:
            with suppress(psutil.NoSuchProcess):
                proc.kill()
        parent.wait(timeout=5)


# Standalone's four children as `ps` shows them, `airflow scheduler`... and the api-server,
# which retitles itself: here `sleep`s given those names as their argv[0].
STANDALONE = """
import subprocess, sys, time
for title in ["airflow scheduler", "airflow dag-processor", "airflow triggerer",
              "airflow api_server -- host:127.0.0.1 port:8080"]:
    subprocess.Popen([title, "600"], executable="sleep")
print("started", flush=True)
time.sleep(600)
"""


def test_a_dead_component_fails_the_wait_with_its_last_lines(tmp_path):
    """Standalone (airflow/cli/commands/standalone_command.py `SubCommand.run`) only reads a
    component's output: one that dies stays dead, and every run would wait in queued."""
    log = tmp_path / "standalone.log"
    log.write_text("scheduler  | ObjectDeletedError: Instance '<DagRun>' has been deleted\n")
    parent = subprocess.Popen([sys.executable, "-c", STANDALONE], stdout=subprocess.PIPE, text=True)
    parent.stdout.readline()
    ports = {f"AIRFLOW__LOGGING__{name}_LOG_SERVER_PORT": "1" for name in ("WORKER", "TRIGGER")}
    services = AirflowServices("http://127.0.0.1:1", ports, "a_dag", log, parent.pid)
    try:
        services.check_components()  # all four alive: nothing to say

        (scheduler,) = [
            child
            for child in psutil.Process(parent.pid).children()
            if "scheduler" in " ".join(child.cmdline())
        ]
        scheduler.kill()  # a zombie until its parent reaps it, as standalone never does
        wait_until(lambda: scheduler.status() == psutil.STATUS_ZOMBIE, "the kill", 5)
        with pytest.raises(RuntimeError, match="scheduler died") as failure:
            services.check_components()
        assert "ObjectDeletedError" in str(failure.value)
        assert "api-server" not in str(failure.value)
    finally:
        assert stop_all(parent.pid, str(tmp_path / "no-home"), grace_s=2, term_s=1) == []
