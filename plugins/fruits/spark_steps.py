"""The Spark jobs of one run, as data: which script, what it reads, what it writes.

Written once and rendered by each platform: EMR turns a job into a `command-runner.jar` step,
the local platform stages its inputs from S3, runs the same `spark-submit` and uploads its
outputs, Databricks turns it into a `spark_python_task`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fruits import lake_layout as layout
from fruits.config import RunConfig

JOB_ORDER = ("featurize", "pca", "classify")
# Jobs a user runs when asked, never in the nightly DAG (project: a range of nights in one basis).
ON_DEMAND_JOBS = ("project",)
# Every other module of spark_jobs/ is the jobs' library, built into the code bundle as one
# archive (code_bundle.bundle_files): a .zip on --py-files (Spark puts only .zip, .egg and .jar
# archives on the workers' path) and the same bytes as a wheel for Databricks' libraries. A new
# module needs no change here.
LIBRARY = ("fruits_jobs", "1.0")
LIBRARY_ZIP = "dist/fruits_jobs.zip"


def is_library_module(name: str) -> bool:
    """A top-level `.py` of spark_jobs/ that is not a job's script."""
    scripts = (*JOB_ORDER, *ON_DEMAND_JOBS)
    return "/" not in name and name.endswith(".py") and name[: -len(".py")] not in scripts


@dataclass(frozen=True)
class SparkJob:
    name: str
    inputs: dict[str, str]  # flag -> URI the job reads (an object or a prefix)
    outputs: dict[str, str]  # flag -> URI the job (re)writes
    options: tuple[str, ...] = field(default=())
    caches: dict[str, str] = field(default_factory=dict)  # flag -> URI read and added to, kept

    @property
    def script(self) -> str:
        return f"{self.name}.py"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "options": list(self.options),
            "caches": self.caches,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparkJob:
        return cls(
            data["name"],
            data["inputs"],
            data["outputs"],
            tuple(data["options"]),
            data.get("caches", {}),
        )

    def arguments(self) -> list[str]:
        pairs = [*self.inputs.items(), *self.outputs.items(), *self.caches.items()]
        return [part for flag, uri in pairs for part in (flag, uri)] + list(self.options)

    def spark_submit(self, code_uri: str, *spark_options: str) -> list[str]:
        """`spark-submit [options] --py-files <code>/<library zip> <code>/<job>.py <arguments>`."""
        code = code_uri.rstrip("/")
        return [
            "spark-submit",
            *spark_options,
            "--py-files",
            f"{code}/{LIBRARY_ZIP}",
            f"{code}/{self.script}",
            *self.arguments(),
        ]


def pipeline_jobs(config: RunConfig) -> list[SparkJob]:
    """The night of `run_date`: featurize its photos into its own partition, refit PCA from the
    nights' kept statistics and project the night's photos into its partition of the vectors
    table, then refit the classifier from the statistics of every night up to it."""
    features, pca = config.uri(config.features_partition_prefix), config.output_uri(layout.PCA)
    vectors = config.uri(config.vectors_partition_prefix)
    pca_choice = (
        ("--k", str(config.pca_k)) if config.pca_k else ("--variance", str(config.pca_variance))
    )
    return [
        SparkJob(
            "featurize",
            inputs={"--input": config.input_uri, "--weights": config.weights_uri},
            outputs={
                "--output": features,
                "--quarantine": config.uri(config.quarantine_partition_prefix),
            },
            # Converting the weights to TFLite costs driver time: once per weights.
            caches={"--model-cache": config.model_cache_uri},
            # featurize compares the weights it loads with the pinned ones (check_weights did
            # before the cluster started; the file could change in between).
            options=("--weights-sha256", config.weights_sha256),
        ),
        SparkJob(
            "pca",
            inputs={"--features": config.uri(config.features_prefix)},
            outputs={"--output": pca, "--vectors": vectors},
            options=("--until", config.run_date, *pca_choice),
            # Each night's PCA statistics, computed once and reused by every later night.
            caches={"--moments": config.uri(config.moments_prefix)},
        ),
        SparkJob(
            "classify",
            inputs={"--features": config.uri(config.features_prefix), "--pca": pca},
            outputs={"--output": config.output_uri(layout.CLASSIFY)},
            options=("--until", config.run_date),
            # Each night's class sums and evaluation, next to its PCA statistics.
            caches={"--moments": config.uri(config.moments_prefix)},
        ),
    ]
