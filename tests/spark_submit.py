"""Run a job the way users and the DAG do: `spark-submit spark_jobs/<job>.py ...` in local mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")


def spark_submit(
    job: str,
    *args: str,
    conf: dict[str, str] | None = None,
    timeout: float = 600,
    master: str = "local[2]",
) -> subprocess.CompletedProcess:
    command = [str(SPARK_SUBMIT), "--master", master, "--conf", "spark.ui.enabled=false"]
    for key, value in (conf or {}).items():
        command += ["--conf", f"{key}={value}"]
    command += [str(REPO / "spark_jobs" / f"{job}.py"), *args]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
