"""Benchmarks that print their figures; each runs its baseline in the same run."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `.venv/bin/python -m benchmarks.<name>` from the repository's root needs no PYTHONPATH: the
# benchmarks import the Airflow-side package and the Spark jobs, as the Makefile's targets do.
for folder in (REPO / "plugins", REPO / "spark_jobs"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
from localdev.shared import PRETRAINED_WEIGHTS, SAMPLE_DIR  # noqa: E402


def add_data_arguments(parser) -> None:
    """--images and --weights, defaulting to the shared real sample and pretrained backbone."""
    parser.add_argument("--images", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--weights", type=Path, default=PRETRAINED_WEIGHTS)
