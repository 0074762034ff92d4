"""The lake's layout: the folder and file names the jobs write and every reader of them expects.

The contract between featurize, pca, classify and project, and with the Airflow side that runs
them, publishes their outputs and reads their figures. Written once here; the Airflow side
(`plugins/fruits/lake_layout.py`, the defaults of `plugins/fruits/config.py`), which cannot
import the jobs' library, is pinned to it by tests/test_lake_layout.py.

    <features root>/ingest_date=<date>/     featurize's photos' features, then _manifest.json
    <quarantine root>/ingest_date=<date>/   featurize's unreadable photos
    <vectors root>/ingest_date=<date>/      pca's projection of the night, then _manifest.json
    <moments root>/ingest_date=<date>/      each night's kept statistics (pca's, classify's)
    <runs root>/<date>/pca/                 pca's model, basis.npz, plots, then report.json
    <runs root>/<date>/classify/            classify's model, report, then metrics.json

Each output's completion marker is written last by its job: a folder without it is what a
failed run left, and no reader uses it.
"""

from __future__ import annotations

# The lake's root folders (the defaults of the Airflow side's `<name>_prefix` settings).
FEATURES = "features"
QUARANTINE = "quarantine"
VECTORS = "vectors"
MOMENTS = "moments"
RUNS = "runs"
# A night's run folder, `<runs root>/<date>/`, holds one folder per job's output.
PCA = "pca"
CLASSIFY = "classify"

# The nightly tables are Hive-style partitioned by the night: `<root>/ingest_date=<date>/`.
PARTITION_KEY = "ingest_date"

MANIFEST = "_manifest.json"  # featurize's features, pca's vectors, project's output
REPORT = "report.json"  # pca's report; classify's night report
METRICS = "metrics.json"  # classify's accuracy and evaluations
MODEL = "model"  # a saved Spark ML PipelineModel (pca's, classify's)
BASIS = "basis.npz"  # pca's model as plain numbers
SCREE_PLOT = "scree.png"
PROJECTION_PLOT = "projection.png"
REPORT_PLOT = "report.png"
# Kept per night under the moments root.
TRAINING_MOMENTS = "training_moments.npz"
CLASS_SUMS = "class_sums.npz"
EVALUATION = "evaluation.json"
# featurize's quarantine: one file, written by the driver.
QUARANTINE_FILE = "part-00000.parquet"

# Which file marks each output complete (its job writes it last).
FEATURES_COMPLETE = MANIFEST
VECTORS_COMPLETE = MANIFEST
PCA_COMPLETE = REPORT
CLASSIFY_COMPLETE = METRICS
PROJECT_COMPLETE = MANIFEST


def partition(root: str, night: str) -> str:
    """A night's partition of a table: `<root>/ingest_date=<night>`."""
    return f"{root.rstrip('/')}/{PARTITION_KEY}={night}"


def partition_glob(root: str) -> str:
    """Every partition of a table, as a Hadoop glob."""
    return f"{root.rstrip('/')}/{PARTITION_KEY}=*"


def night_of(partition_uri: str) -> str | None:
    """'…/ingest_date=2026-11-25' -> '2026-11-25'; None for anything else."""
    name = partition_uri.rstrip("/").rsplit("/", 1)[-1]
    key, _, value = name.partition("=")
    return value if key == PARTITION_KEY else None


def run_folder(runs_root: str, night: str) -> str:
    """Where a night's models and reports live: `<runs root>/<night>`."""
    return f"{runs_root.rstrip('/')}/{night}"
