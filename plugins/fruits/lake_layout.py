"""The lake's layout as the Spark jobs write it, for the Airflow side that reads and publishes it.

spark_jobs/lake_layout.py owns these names. The Airflow side cannot import the jobs' library (it
ships to the cluster from a folder set at deployment, FRUITS_SPARK_JOBS_DIR), so
tests/test_lake_layout.py pins each name here to the jobs' own value.
"""

from __future__ import annotations

FEATURES = "features"
QUARANTINE = "quarantine"
VECTORS = "vectors"
MOMENTS = "moments"
RUNS = "runs"
PCA = "pca"  # a night's run folder holds one folder per job's output
CLASSIFY = "classify"
PARTITION_KEY = "ingest_date"  # <table root>/ingest_date=<date>/
MANIFEST = "_manifest.json"
REPORT = "report.json"
METRICS = "metrics.json"
FEATURES_COMPLETE = MANIFEST  # each output's completion marker, written last by its job
PCA_COMPLETE = REPORT
CLASSIFY_COMPLETE = METRICS
