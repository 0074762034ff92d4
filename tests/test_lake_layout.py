"""The lake's layout is written once, in spark_jobs/lake_layout.py, and every place is pinned to it.

The jobs import it. The Airflow side cannot (the jobs' library ships to the cluster from a
folder set at deployment): its copy of the names, plugins/fruits/lake_layout.py, and the
settings' defaults in plugins/fruits/config.py are compared with the jobs' values here. And no
source outside the two layout modules spells a file name of the contract or the partition key
as a string literal of its own.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import lake_layout as jobs_layout
from fruits import lake, lake_layout
from fruits.config import Deployment, RunConfig
from localdev.lake import fruits_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
LAYOUT_MODULES = {
    REPO / "spark_jobs" / "lake_layout.py",
    REPO / "plugins" / "fruits" / "lake_layout.py",
}
SOURCES = ("spark_jobs", "plugins/fruits", "localdev", "dags")
# The contract's file names and partition key: nowhere but in the layout modules.
CONTRACT_NAMES = (
    jobs_layout.MANIFEST,
    jobs_layout.REPORT,
    jobs_layout.METRICS,
    jobs_layout.BASIS,
    jobs_layout.TRAINING_MOMENTS,
    jobs_layout.CLASS_SUMS,
    jobs_layout.EVALUATION,
    jobs_layout.SCREE_PLOT,
    jobs_layout.PROJECTION_PLOT,
    jobs_layout.REPORT_PLOT,
    jobs_layout.QUARANTINE_FILE,
    jobs_layout.PARTITION_KEY,
)
# A root or output folder spelled in a path: "runs/<date>", "<run>/pca/", "<root>/vectors".
FOLDERS = "features|quarantine|vectors|moments|runs|pca|classify"
FOLDER_IN_PATH = re.compile(rf"(^|/)({FOLDERS})/|/({FOLDERS})$")
# Where a folder name in a path is no copy of the layout, or is pinned otherwise.
FOLDERS_ALLOWED = {
    # the settings' defaults: pinned by test_the_configs_default_locations_are_the_layouts
    REPO / "plugins" / "fruits" / "config.py",
    # Airflow's own REST path /dags/<id>/runs/<run id>, not the lake's
    REPO / "localdev" / "grid_screenshot.py",
}


def public_names(module) -> dict[str, object]:
    return {name: value for name, value in vars(module).items() if name.isupper()}


def test_the_airflow_sides_names_are_the_jobs_own():
    airflow_side = public_names(lake_layout)
    assert airflow_side, "plugins/fruits/lake_layout.py defines no names"
    assert {name: getattr(jobs_layout, name, None) for name in airflow_side} == airflow_side


def test_the_photos_the_airflow_side_counts_are_the_ones_featurize_reads():
    from image_reading import IMAGE_EXTENSIONS

    assert tuple(f".{extension}" for extension in IMAGE_EXTENSIONS) == lake.PHOTO_SUFFIXES


def test_the_configs_default_locations_are_the_layouts():
    config = RunConfig.build(
        {"run_date": "2026-11-25"},
        fruits_config("s3://fruits-lake/weights/w.weights.h5", "0" * 64),
        Deployment(),
    )
    roots = {
        "features_prefix": jobs_layout.FEATURES,
        "quarantine_prefix": jobs_layout.QUARANTINE,
        "vectors_prefix": jobs_layout.VECTORS,
        "moments_prefix": jobs_layout.MOMENTS,
        "runs_prefix": jobs_layout.RUNS,
    }
    assert {name: getattr(config, name) for name in roots} == roots
    assert config.features_partition_prefix == jobs_layout.partition(
        jobs_layout.FEATURES, "2026-11-25"
    )
    assert config.partition_prefix("a/b") == jobs_layout.partition("a/b", "2026-11-25")
    assert config.run_prefix == jobs_layout.run_folder(jobs_layout.RUNS, "2026-11-25")


def literals(path: Path) -> list[tuple[int, str]]:
    """The string constants of a source file (f-strings' parts included), docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def spelled_again(path: Path) -> list[str]:
    found = []
    for line, text in literals(path):
        names = [name for name in CONTRACT_NAMES if name in text]
        if names or (path not in FOLDERS_ALLOWED and FOLDER_IN_PATH.search(text)):
            found.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    return found


def test_no_source_spells_the_layout_outside_the_layout_modules():
    sources = sorted(p for folder in SOURCES for p in (REPO / folder).rglob("*.py"))
    assert len(sources) > 30
    found = [hit for path in sources if path not in LAYOUT_MODULES for hit in spelled_again(path)]
    assert found == []


def test_the_scan_sees_a_literal_in_an_f_string(tmp_path):
    source = tmp_path / "job.py"
    source.write_text(
        '"""Writes `_manifest.json` (a docstring may name it)."""\n'
        'def f(root):\n    return f"{root}/_manifest.json"\n'
    )
    assert len(spelled_again_at(source, tmp_path)) == 1


def spelled_again_at(path: Path, root: Path) -> list[str]:
    return [
        f"{path.relative_to(root)}:{line}"
        for line, text in literals(path)
        if any(name in text for name in CONTRACT_NAMES)
    ]
