"""The DAG as a reviewer sees it: imports cleanly, runs in this order, sends valid EMR requests."""

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from fruits import databricks, emr
from fruits.config import PLATFORMS, ConfigError, Deployment, RunConfig
from fruits.local_platform import local_master
from fruits.night_runs import run_date_of
from fruits.spark_sizing import TASK_SLOTS_PER_VCPU
from fruits.spark_steps import pipeline_jobs
from localdev import lake

WHEELHOUSE = "s3://fruits-lake/code/wheelhouse/0123456789abcdef"

pytestmark = pytest.mark.unit

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "fruits_pipeline.py"
VARIABLE = lake.fruits_config("s3://fruits-lake/models/mobilenet.weights.h5", "e" * 64)
UPSTREAM = {  # task -> the tasks it waits for: the pipeline's order, exactly
    "wait_for_earlier_nights": set(),
    "resolve_config": {"wait_for_earlier_nights"},
    "find_new_photos": {"resolve_config"},
    "setup.upload_spark_jobs": {"resolve_config", "find_new_photos"},
    "setup.check_weights": {"resolve_config", "find_new_photos"},
    "setup.plan_spark_jobs": {"resolve_config", "find_new_photos"},
    "setup.clear_night_outputs": {"resolve_config", "find_new_photos"},
    "choose_platform": {
        "resolve_config",
        "setup.upload_spark_jobs",
        "setup.check_weights",
        "setup.plan_spark_jobs",
        "setup.clear_night_outputs",
    },
    "emr.emr_job_flow": {"choose_platform", "resolve_config", "setup.upload_spark_jobs"},
    "emr.create_emr_cluster": {"emr.emr_job_flow", "resolve_config"},
    "emr.emr_steps": {"emr.create_emr_cluster", "setup.plan_spark_jobs", "setup.upload_spark_jobs"},
    # Every AWS task gets the region from resolve_config.
    "emr.add_featurize_step": {"emr.create_emr_cluster", "emr.emr_steps", "resolve_config"},
    "emr.watch_featurize_step": {
        "emr.add_featurize_step",
        "emr.create_emr_cluster",
        "resolve_config",
    },
    "emr.add_pca_step": {
        "emr.create_emr_cluster",
        "emr.emr_steps",
        "emr.watch_featurize_step",
        "resolve_config",
    },
    "emr.watch_pca_step": {"emr.add_pca_step", "emr.create_emr_cluster", "resolve_config"},
    "emr.add_classify_step": {
        "emr.create_emr_cluster",
        "emr.emr_steps",
        "emr.watch_pca_step",
        "resolve_config",
    },
    "emr.watch_classify_step": {
        "emr.add_classify_step",
        "emr.create_emr_cluster",
        "resolve_config",
    },
    "emr.terminate_emr_cluster": {
        "emr.emr_job_flow",
        "emr.create_emr_cluster",
        "emr.watch_classify_step",
        "resolve_config",
    },
    "local.run_featurize_locally": {
        "choose_platform",
        "setup.plan_spark_jobs",
        "setup.upload_spark_jobs",
        "resolve_config",
    },
    "local.run_pca_locally": {
        "local.run_featurize_locally",
        "setup.plan_spark_jobs",
        "setup.upload_spark_jobs",
        "resolve_config",
    },
    "local.run_classify_locally": {
        "local.run_pca_locally",
        "setup.plan_spark_jobs",
        "setup.upload_spark_jobs",
        "resolve_config",
    },
    "databricks.databricks_job_settings": {
        "choose_platform",
        "resolve_config",
        "setup.plan_spark_jobs",
        "setup.upload_spark_jobs",
    },
    "databricks.define_databricks_job": {"databricks.databricks_job_settings"},
    "databricks.run_on_databricks": {
        "databricks.define_databricks_job",
        "databricks.databricks_job_settings",
    },
    "databricks.release_databricks_run": {
        "databricks.run_on_databricks",
        "databricks.define_databricks_job",
    },
    "publish.plan_export": {  # after whichever platform ran (not after the EMR teardown)
        "resolve_config",
        "emr.watch_classify_step",
        "local.run_classify_locally",
        "databricks.run_on_databricks",
    },
    "publish.copy_to_azure": {"publish.plan_export"},
    "publish.verify_and_publish": {"publish.copy_to_azure", "resolve_config"},
}


def config(**params) -> RunConfig:
    return RunConfig.build({"run_date": "2026-11-25", **params}, VARIABLE, Deployment())


def test_the_tasks_run_in_the_pipeline_order(parsed_dag):
    assert {t.task_id: set(t.upstream_task_ids) for t in parsed_dag.tasks} == UPSTREAM


def test_the_grid_reads_setup_then_one_group_per_platform_then_publish(parsed_dag):
    # The graph's order of the top level (the api-server's topological sort; the grid lists
    # siblings with no order between them, the three platforms, alphabetically).
    top_level = [node.node_id for node in parsed_dag.task_group.topological_sort()]
    assert top_level == [
        "wait_for_earlier_nights",
        "resolve_config",
        "find_new_photos",
        "setup",
        "choose_platform",
        "emr",
        "local",
        "databricks",
        "publish",
    ]
    groups = parsed_dag.task_group.children
    for name in ("setup", "emr", "local", "databricks", "publish"):
        assert all(t.startswith(f"{name}.") for t in groups[name].children), name
    # The branch picks a group, by the group's own id: no task name is spelt out twice.
    branch = parsed_dag.get_task("choose_platform")
    assert branch.op_args[1] == {p: p for p in ("emr", "local", "databricks")}
    assert {t.task_id for t in branch.downstream_list} == {
        "emr.emr_job_flow",
        "local.run_featurize_locally",
        "databricks.databricks_job_settings",
    }


def test_the_clusters_are_always_released_by_a_teardown(parsed_dag):
    terminate = parsed_dag.get_task("emr.terminate_emr_cluster")
    assert terminate.is_teardown
    # The job flow is a setup too: the teardown runs even when every try of the create failed.
    setups = {s.task_id for s in terminate.upstream_list if s.is_setup}
    assert setups == {"emr.emr_job_flow", "emr.create_emr_cluster"}
    release = parsed_dag.get_task("databricks.release_databricks_run")
    assert release.is_teardown
    assert {s.task_id for s in release.upstream_list if s.is_setup} == {
        "databricks.define_databricks_job"
    }


def test_schedule_defaults_and_form(parsed_dag):
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.exceptions import ParamValidationError

    deployment = Deployment.from_env()  # as the DAG file read it
    timetable = parsed_dag.timetable
    assert isinstance(timetable, CronDataIntervalTimetable)  # a night is the day that ended
    assert (timetable.expression, str(timetable.timezone)) == ("0 2 * * *", "UTC")
    assert (parsed_dag.catchup, parsed_dag.max_active_runs) == (False, 1)
    assert parsed_dag.start_date == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parsed_dag.dagrun_timeout == timedelta(seconds=deployment.run_timeout_s)
    assert parsed_dag.tags == {"fruits", "spark", "emr", "databricks", "azure"}
    assert parsed_dag.doc_md == ast.get_docstring(ast.parse(DAG_FILE.read_text()), clean=False)
    defaults = parsed_dag.default_args
    assert (defaults["owner"], defaults["retries"]) == ("data-platform", 2)
    assert defaults["retry_delay"] == timedelta(seconds=deployment.retry_delay_s)
    assert defaults["execution_timeout"] == timedelta(seconds=deployment.task_timeout_s)
    add_steps = [t for t in parsed_dag.tasks if t.task_id.startswith("emr.add_")]
    assert len(add_steps) == 3 and all(t.retries == 0 for t in add_steps)  # airflow#28704

    # The run form: its fields, their defaults, and what it refuses.
    form = parsed_dag.params
    assert {name: form[name] for name in form} == {
        "run_date": None,
        "input_prefix": None,
        "pca_variance": 0.95,
        "pca_k": None,
        "platform": deployment.default_platform,
    }
    assert form.get_param("platform").schema["enum"] == list(PLATFORMS)
    accepted = {"pca_variance": [1, 0.5], "pca_k": [1, 1280, None], "platform": list(PLATFORMS)}
    refused = {"pca_variance": [0, 1.01, "high"], "pca_k": [0, 1281, 2.5], "platform": ["gcp"]}
    for name, values in accepted.items():
        for value in values:
            assert form.get_param(name).resolve(value) == value
    for name, values in refused.items():
        for value in values:
            with pytest.raises(ParamValidationError):
                form.get_param(name).resolve(value)


def test_the_run_timeout_fires_after_every_task_timeout(parsed_dag):
    """A run past its dagrun_timeout is failed and every unfinished task is marked SKIPPED, the
    teardown included (airflow/jobs/scheduler_job_runner.py, SchedulerJobRunner._schedule_dag_run:
    `task_instance.state = TaskInstanceState.SKIPPED` for each unfinished one): the cluster would
    be left running. So the run's timeout must exceed the longest chain of tasks each taking its
    whole execution_timeout, as Deployment.longest_run_s counts it (one try each; the gate that
    waits for earlier nights is not the night's own work)."""
    deployment = Deployment.from_env()
    assert longest_chain_s(parsed_dag, skip={"wait_for_earlier_nights"}) == (
        deployment.longest_run_s
    )
    assert parsed_dag.dagrun_timeout.total_seconds() > deployment.longest_run_s
    with pytest.raises(ConfigError, match="FRUITS_RUN_TIMEOUT_S=.*FRUITS_STEP_GRACE_S"):
        Deployment.from_env({"FRUITS_RUN_TIMEOUT_S": str(deployment.longest_run_s)})
    watchers = [t for t in parsed_dag.tasks if t.task_id.startswith("emr.watch_")]
    assert {t.execution_timeout.total_seconds() for t in watchers} == {deployment.spark_wait_s}


def longest_chain_s(dag, skip: set[str]) -> float:
    """The most seconds a chain of tasks can take, each its execution_timeout."""
    finish: dict[str, float] = {}

    def finish_of(task) -> float:
        if task.task_id not in finish:
            own = 0 if task.task_id in skip else task.execution_timeout.total_seconds()
            finish[task.task_id] = own + max(map(finish_of, task.upstream_list), default=0)
        return finish[task.task_id]

    return max(map(finish_of, dag.tasks))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def scheduled_dates(dag, earliest: datetime, latest: datetime) -> list[tuple[str, datetime]]:
    """(date processed, run_after) of the runs the scheduler's own timetable makes between two
    logical dates: the serialized DAG is what the scheduler and a backfill iterate."""
    from airflow.serialization.serialized_objects import DagSerialization

    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    return [
        (run_date_of(None, info.logical_date, info.run_after), info.run_after)
        for info in scheduled.iter_dagrun_infos_between(earliest, latest)
    ]


def test_a_night_processes_the_day_that_just_ended(parsed_dag):
    # The run at 02:00 on the 25th is the night of the 24th.
    assert scheduled_dates(parsed_dag, utc(2026, 11, 24), utc(2026, 11, 24, 23)) == [
        ("2026-11-24", utc(2026, 11, 25, 2))
    ]


def test_a_backfill_makes_one_run_per_date(parsed_dag):
    # A backfill's range bounds logical dates, D 02:00: up to the last date's 02:00 includes it,
    assert [d for d, _ in scheduled_dates(parsed_dag, utc(2026, 11, 1), utc(2026, 11, 3, 2))] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ]
    # and a bare date (midnight) ends the range the night before it (the README says so).
    assert [d for d, _ in scheduled_dates(parsed_dag, utc(2026, 11, 1), utc(2026, 11, 3))] == [
        "2026-11-01",
        "2026-11-02",
    ]


def emr_shape(operation: str):
    model = botocore.session.get_session().get_service_model("emr")
    return model.operation_model(operation).input_shape


def test_the_job_flow_is_a_valid_run_job_flow_request():
    run = config()
    request = emr.job_flow(
        run, "s3://fruits-lake/code/abc", "manual__2026-11-25T02:00:00+00:00", WHEELHOUSE
    )
    report = ParamValidator().validate(request, emr_shape("RunJobFlow"))
    assert not report.has_errors(), report.generate_report()
    assert request["ReleaseLabel"].startswith("emr-7.")
    assert request["LogUri"] == "s3://fruits-lake/emr-logs/"
    assert request["AutoTerminationPolicy"]["IdleTimeout"] > 0
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    spark_env = request["Configurations"][0]["Configurations"][0]["Properties"]
    assert spark_env["PYSPARK_PYTHON"] == emr.VENV_PYTHON
    assert {"Key": "airflow_run_id", "Value": "manual__2026-11-25T02:00:00+00:00"} in request[
        "Tags"
    ]
    bootstrap = request["BootstrapActions"][0]["ScriptBootstrapAction"]
    # The bundle's lock, installed from its wheelhouse (tests/test_cluster_requirements.py).
    assert bootstrap["Args"] == ["s3://fruits-lake/code/abc/requirements.lock", WHEELHOUSE]


# AWS's figures for the default node types: m5.2xlarge (EMR core node) and m5d.2xlarge
# (Databricks worker) have 8 vCPUs; EMR gives YARN 24,576 MB of an m5.2xlarge
# (yarn.nodemanager.resource.memory-mb in EMR's task configuration table).
NODE_VCPUS = 8
EMR_YARN_MB = 24_576
SPARK_AM_MB = 512 + 384  # Spark's ApplicationMaster in client mode, on one of the core nodes
WORKER_PEAK_RSS_MB = 200  # a Python worker with ordinary photos (benchmarks.featurize)


def megabytes(size: str) -> int:
    return int(size[:-1]) * {"m": 1, "g": 1024}[size[-1]]


def test_every_platform_runs_the_same_task_slots_per_vcpu():
    # (Whether YARN admits these executors at all: tests/test_yarn_admission.py.)
    run = config()
    configurations = emr.job_flow(run, "s3://fruits-lake/code/abc", "run", WHEELHOUSE)[
        "Configurations"
    ]
    (executor,) = [
        c["Properties"] for c in configurations if c["Classification"] == "spark-defaults"
    ]
    container_mb = megabytes(executor["spark.executor.memory"]) + megabytes(
        executor["spark.executor.memoryOverhead"]
    )
    slots = int(executor["spark.executor.cores"])
    emr_slots = (EMR_YARN_MB - SPARK_AM_MB) // container_mb * slots  # YARN places by memory
    worker_cores = databricks.job_cluster(run)["spark_env_vars"]["SPARK_WORKER_CORES"]
    assert emr_slots / NODE_VCPUS == TASK_SLOTS_PER_VCPU
    assert int(worker_cores) / NODE_VCPUS == TASK_SLOTS_PER_VCPU
    assert local_master(3) == f"local[{3 * TASK_SLOTS_PER_VCPU}]"
    # Outside the heap, each slot's Python worker has twice what it needs with ordinary photos,
    # once the JVM's own off-heap memory (Spark's default overhead: 10% of the heap) is counted.
    jvm_off_heap_mb = 0.1 * megabytes(executor["spark.executor.memory"])
    python_mb = megabytes(executor["spark.executor.memoryOverhead"]) - jvm_off_heap_mb
    assert python_mb / slots >= 2 * WORKER_PEAK_RSS_MB


@pytest.mark.parametrize("params", [{}, {"pca_k": 40}])
def test_the_steps_are_valid_add_job_flow_steps_requests(params):
    jobs = pipeline_jobs(config(**params))
    steps = [emr.step(job, "s3://fruits-lake/code/abc", 3600) for job in jobs]
    request = {"JobFlowId": "j-1", "Steps": steps}
    report = ParamValidator().validate(request, emr_shape("AddJobFlowSteps"))
    assert not report.has_errors(), report.generate_report()
    bounded = ["timeout", "--kill-after=60s", "3600s"]  # each step ends itself (test_step_timeout)
    assert all(step["HadoopJarStep"]["Args"][:3] == bounded for step in steps)
    featurize, pca, classify = (step["HadoopJarStep"]["Args"][3:] for step in steps)
    assert featurize[:5] == [
        "spark-submit",
        "--deploy-mode",
        "client",
        "--py-files",
        "s3://fruits-lake/code/abc/dist/fruits_jobs.zip",  # the jobs' library, one archive
    ]
    assert featurize[5] == "s3://fruits-lake/code/abc/featurize.py"
    flags = [dict(zip(args[6::2], args[7::2], strict=False)) for args in (featurize, pca, classify)]
    assert flags[0]["--input"] == "s3://fruits-lake/landing/2026-11-25"  # the night's photos only
    assert flags[0]["--output"] == "s3://fruits-lake/features/ingest_date=2026-11-25"
    assert flags[0]["--quarantine"] == "s3://fruits-lake/quarantine/ingest_date=2026-11-25"
    assert flags[0]["--model-cache"] == "s3://fruits-lake/models/compiled"  # kept across nights
    assert flags[0]["--weights-sha256"] == config().weights_sha256  # compared where loaded
    assert flags[1]["--features"] == "s3://fruits-lake/features"  # the whole history...
    assert flags[1]["--until"] == "2026-11-25"  # ...up to the night
    assert flags[1]["--moments"] == "s3://fruits-lake/moments"
    assert flags[1]["--vectors"] == "s3://fruits-lake/vectors/ingest_date=2026-11-25"  # the night
    assert ("--k" in pca) == ("pca_k" in params)
    assert flags[2]["--pca"] == "s3://fruits-lake/runs/2026-11-25/pca"
    assert flags[2]["--features"] == flags[1]["--features"]  # read: the night, and lost statistics
    assert flags[2]["--moments"] == flags[1]["--moments"]  # kept beside PCA's, cleared with them
    assert flags[2]["--until"] == "2026-11-25"


def test_each_watcher_watches_the_step_its_add_task_returned(parsed_dag):
    """As the Amazon provider's example_emr.py: the sensor is given the add task's `.output`
    (its list of step ids), not a template pulling a task id spelt out again."""
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    from fruits.emr_cluster import only_step

    for name in ("featurize", "pca", "classify"):
        watcher = parsed_dag.get_task(f"emr.watch_{name}_step")
        assert isinstance(watcher.step_id, PlainXComArg)
        assert watcher.step_id.operator is parsed_dag.get_task(f"emr.add_{name}_step")
    assert only_step(["s-1ABC"]) == "s-1ABC"
    with pytest.raises(ValueError, match="one added step"):
        only_step(["s-1", "s-2"])
