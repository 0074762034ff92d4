"""The DAG on platform local: a job that fails in spark-submit fails the run, with the job's
own error in the task log, and nothing is published."""

from __future__ import annotations

import pytest

from fake_cloud import RUN_DATE, seeded_cloud

pytestmark = pytest.mark.e2e  # spark-submit of the real job


def test_a_failing_local_job_fails_the_run_with_the_jobs_error(
    pipeline_dag, tmp_path, capfd, caplog, monkeypatch
):
    # Pinned and present (check_weights passes) but no HDF5 file: featurize, the real job,
    # refuses it before featurizing any image.
    weights = tmp_path / "broken.weights.h5"
    weights.write_bytes(b"<html>403 Forbidden</html>")
    # One try: the job's error, not its retries, is the point (each try starts a JVM).
    monkeypatch.setattr(pipeline_dag.get_task("local.run_featurize_locally"), "retries", 0)
    with seeded_cloud(tmp_path / "cloud", weights), caplog.at_level("INFO"):
        capfd.readouterr()
        dag_run = pipeline_dag.test(logical_date=RUN_DATE, run_conf={"platform": "local"})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err

    assert dag_run.state == "failed", states
    assert states["setup.check_weights"] == "success"
    assert states["local.run_featurize_locally"] == "failed"
    assert states["local.run_pca_locally"] == "upstream_failed"
    assert states["publish.copy_to_azure"] == "upstream_failed"
    assert "is not an HDF5 file" in logged  # the job's own words, in the task's log
    assert "task local.run_featurize_locally failed after 1 tries" in logged
