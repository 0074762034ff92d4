"""The services harness stops everything it started: the whole tree, orphans too, stubborn ones."""

import os
import subprocess
import sys
import time
from contextlib import suppress

import psutil
import pytest

from airflow_services import stop_all

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
