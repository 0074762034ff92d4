"""What the Databricks runtime already installs, so the job cluster adds only what it lacks.

A runtime pins its own numpy, pandas and pyarrow, and Spark's Python side is built against them:
Databricks withdrew DBR 15.0 after its pandas upgrade (1.5.3 -> 2.0.3) broke Spark APIs. A PyPI
library that needs newer versions makes the job cluster's pip replace them. TensorFlow 2.21
(what EMR and local runs use) needs numpy >= 1.26 and protobuf >= 6.31, where DBR 15.4 LTS has
numpy 1.23.5 and protobuf 4.24: the jobs therefore run on DBR 15.4 LTS for Machine Learning, whose
own TensorFlow (2.16) converts the weights, and the job cluster installs only the TFLite runtime.
`uv pip compile` of these libraries with RUNTIME_PINS as constraints resolves without moving any
of them (tests/test_databricks_libraries.py pins what it found).

From the runtime's release notes, "System environment" and "Python libraries on CPU clusters":
RELEASE_NOTES. Transcribed, not fetched by code: check them again when changing RUNTIME.
"""

from __future__ import annotations

RUNTIME = "15.4.x-cpu-ml-scala2.12"  # DBR 15.4 LTS ML: Spark 3.5.0, Python 3.11, Scala 2.12
RELEASE_NOTES = "https://docs.databricks.com/aws/en/release-notes/runtime/15.4lts-ml"
# The runtime's libraries among those the jobs or their libraries use (PEP 503 names).
RUNTIME_LIBRARIES = frozenset(
    {
        "flatbuffers",
        "h5py",
        "keras",
        "matplotlib",
        "ml-dtypes",
        "numpy",
        "packaging",
        "pandas",
        "pillow",
        "protobuf",
        "pyarrow",
        "tensorflow",
        "tqdm",
        "typing-extensions",
    }
)
# The runtime's versions that decide what may be added without replacing them.
RUNTIME_PINS = {
    "numpy": "1.23.5",
    "pandas": "1.5.3",
    "pyarrow": "14.0.1",
    "protobuf": "4.24.1",
    "ml-dtypes": "0.3.2",
    "tensorflow": "2.16.1",
}
# What the jobs need and the runtime lacks, at the versions of spark_jobs/requirements.lock:
# the TFLite runtime and its one dependency the runtime does not ship.
JOB_LIBRARIES = ("ai-edge-litert", "backports-strenum")
