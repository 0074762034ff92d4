"""The Databricks job payload, checked against the Databricks SDK's models of the Jobs API."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_databricks import check_job_settings
from fruits import code_bundle, databricks, emr
from fruits.config import Deployment, RunConfig
from fruits.spark_steps import pipeline_jobs
from localdev import lake

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = (REPO / "spark_jobs" / code_bundle.REQUIREMENTS_LOCK).read_text()
CODE = "s3://fruits-lake/code/abc"


def config(**variable) -> RunConfig:
    return RunConfig.build(
        {"run_date": "2026-11-25", "platform": "databricks"},
        lake.fruits_config("s3://fruits-lake/models/w.weights.h5", "e" * 64, **variable),
        Deployment(),
    )


def test_the_job_is_a_valid_jobs_api_request_running_the_emr_steps_arguments():
    run = config(databricks_instance_profile_arn="arn:aws:iam::1:instance-profile/fruits")
    jobs = pipeline_jobs(run)
    settings = databricks.job_settings(run, jobs, CODE, REQUIREMENTS, timeout_s=3600)

    check_job_settings(settings)  # every field known to the SDK's JobSettings model
    (cluster,) = settings["job_clusters"]
    assert cluster["new_cluster"]["spark_version"].startswith("15.4.")  # Spark 3.5
    assert cluster["new_cluster"]["aws_attributes"]["instance_profile_arn"].endswith("/fruits")
    tasks = settings["tasks"]
    assert [t["task_key"] for t in tasks] == ["featurize", "pca", "classify"]
    assert [t.get("depends_on") for t in tasks] == [
        None,
        [{"task_key": "featurize"}],
        [{"task_key": "pca"}],
    ]
    assert {t["job_cluster_key"] for t in tasks} == {cluster["job_cluster_key"]}
    for task, job in zip(tasks, jobs, strict=True):
        step = emr.step(job, CODE, 60)["HadoopJarStep"]["Args"]
        python_task = task["spark_python_task"]
        assert python_task["python_file"] == step[step.index("--py-files") + 2]
        assert python_task["parameters"] == step[step.index("--py-files") + 3 :]
        libraries = task["libraries"]
        assert {"whl": f"{CODE}/{code_bundle.LIBRARY_WHEEL}"} in libraries
        pins = {lib["pypi"]["package"] for lib in libraries if "pypi" in lib}
        # Only what the runtime lacks (tests/test_databricks_libraries.py).
        assert pins == set(databricks.library_pins(REQUIREMENTS))
        assert "ai-edge-litert==2.3.0" in pins and not any(p.startswith("pyspark") for p in pins)


def test_a_misspelled_field_is_refused_by_the_check():
    settings = databricks.job_settings(config(), pipeline_jobs(config()), CODE, REQUIREMENTS, 60)
    settings["tasks"][0]["job_cluster"] = settings["tasks"][0].pop("job_cluster_key")
    with pytest.raises(ValueError, match=r"tasks\[0\]\.job_cluster"):
        check_job_settings(settings)


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        (("timeout_seconds",), "sixty", r"timeout_seconds \('sixty' is not int\)"),
        (("max_concurrent_runs",), True, r"max_concurrent_runs \(True is not int\)"),
        (
            ("job_clusters", 0, "new_cluster", "num_workers"),
            "2.5",
            r"job_clusters\[0\]\.new_cluster\.num_workers \('2\.5' is not int\)",
        ),
        (
            ("tasks", 1, "spark_python_task", "parameters", 1),
            3,
            r"tasks\[1\]\.spark_python_task\.parameters\[1\] \(3 is not str\)",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_the_check(where, value, problem):
    wrong = settings()
    *parents, leaf = where
    container = wrong
    for key in parents:
        container = container[key]
    container[leaf] = value
    with pytest.raises(ValueError, match=problem):
        check_job_settings(wrong)


def settings() -> dict:
    return databricks.job_settings(config(), pipeline_jobs(config()), CODE, REQUIREMENTS, 60)
