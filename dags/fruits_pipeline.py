"""
### Fruits! nightly features

Each night D featurizes the photos the app landed under `landing/D/` (and only those) into the
lake's partition `features/ingest_date=D/`, refits PCA from every night's kept statistics up to
D and projects the night's photos into `vectors/ingest_date=D/`, refits the classifier, and
publishes the night's partitions, models and reports to Azure Blob Storage.

0. **wait_for_earlier_nights**: the run waits (deferred) until the run before it by logical date has
   finished: a backfill runs several nights at once, and night D+1 refits over night D.
1. **resolve_config**: run form + Variable `fruits_config` + deployment, validated: a bad setting
   fails here, once, before any cluster exists, with a message naming it.
   **find_new_photos**: no photo under `landing/D/`: the run succeeds here and says so; nothing
   is started or published.
2. **setup**: `clear_night_outputs` empties `runs/D/`, the night's vectors and its kept
   statistics, so nothing a failed or earlier run of D left can be exported or reused;
   `upload_spark_jobs` puts
   `spark_jobs/` under `s3://<lake>/code/<content hash>/` (skipped if there), so each run names
   the exact code it ran; `check_weights`: the pinned weights artifact is in S3 with the pinned
   sha256; `plan_spark_jobs`: the three jobs as data, rendered alike by every platform.
3. **choose_platform** (from the run form) picks one task group; the other two are skipped:
   - `emr`: create the cluster, then featurize -> pca -> classify as EMR steps, each watched by a
     sensor; the cluster is terminated by a *teardown* task whatever happens (a teardown runs
     after success, failure or timeout, like `trigger_rule=ALL_DONE`, but does not turn a failed
     run into a successful one).
   - `local`: the same spark-submit commands in Spark local mode, inputs staged from S3.
   - `databricks`: one Databricks run of the same three jobs on a job cluster (released when the
     run ends; a teardown cancels a run Airflow stopped watching).
4. **publish**: `copy_to_azure` (the Azure provider's `S3ToAzureBlobStorageOperator`, one mapped
   copy per folder) copies the night's partitions of `features/`, `quarantine/` and `vectors/`
   and `runs/D/` to a staging folder `<container>/<prefix>/_staging/D/<run id>/`;
   `verify_and_publish` checks every object (name, size, MD5), publishes it server-side into
   its table, `<prefix>/<lake prefix>/attempt=<run id>/` (one table per dataset, one partition
   per night), points `<prefix>/runs/D/LATEST.json` at it, removes the date's other attempts,
   and emits the night's Asset events with its figures (`fruits.export` says why so).

A task that fails for good logs one line naming it, why, and its log's address.
A re-run or a backfill of D replaces D's partitions and `runs/D/` and nothing else. Credentials
come only from the Airflow connections.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator
from airflow.providers.databricks.hooks.databricks import DatabricksHook, RunState
from airflow.providers.databricks.operators.databricks import (
    DatabricksCreateJobsOperator,
    DatabricksRunNowOperator,
)
from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
from airflow.providers.microsoft.azure.transfers.s3_to_wasb import S3ToAzureBlobStorageOperator
from airflow.sdk import (
    Asset,
    BaseHook,
    CronDataIntervalTimetable,
    Param,
    TaskGroup,
    TriggerRule,
    Variable,
    chain,
    dag,
    task,
)
from airflow.sdk.exceptions import AirflowFailException
from azure.core.exceptions import ResourceNotFoundError

from fruits import code_bundle, databricks, emr, export, lake, local_platform, weights
from fruits.config import (
    FEATURE_SIZE,
    PLATFORMS,
    ConfigError,
    Deployment,
    Platform,
    RunConfig,
    parse_variable,
    with_run_config,
)
from fruits.emr_cluster import (
    CreateRunClusterOperator,
    TerminateRunClustersOperator,
    WatchStepSensor,
)
from fruits.night_facts import emr_cost_estimate, night_facts
from fruits.night_runs import WaitForEarlierNights, run_date_of
from fruits.retry import RETRY_ONLY_TRANSIENT_AWS_ERRORS, RETRY_TRANSIENT_AWS_ERRORS
from fruits.spark_steps import JOB_ORDER, SparkJob, pipeline_jobs

log = logging.getLogger(__name__)
DEPLOYMENT = Deployment.from_env()
SPARK_JOBS_DIR = DEPLOYMENT.spark_jobs_folder(  # versioned with the DAG
    next_to_dags=Path(__file__).resolve().parents[1] / "spark_jobs",
    holding=[*(f"{name}.py" for name in JOB_ORDER), "requirements.lock"],
)
# Named, not located: the bucket and container are fruits_config's, known only when a run reads
# it, so each night's event says where its outputs are (downstream DAGs read the event's extra).
PUBLISHED_IN_AZURE = Asset(name="fruits_features_azure")
WRITTEN_IN_S3 = Asset(name="fruits_features_s3")
# A Spark job ends itself after FRUITS_STEP_TIMEOUT_S; what waits for one (a step's watcher, a
# local job) gives up FRUITS_STEP_GRACE_S later; every other task within FRUITS_TASK_TIMEOUT_S;
# the run's timeout is above them all (fruits.config.Deployment checks it).
SPARK_WAIT = timedelta(seconds=DEPLOYMENT.spark_wait_s)


def report_failure(context) -> None:
    """After a task's last try: one line saying which task (an EMR watcher: which step) failed,
    why, and where its log is. The sensors' errors carry EMR's reason and the step's log file."""
    ti = context["ti"]
    log.error(
        "fruits_pipeline %s: task %s failed after %s tries: %s | log: %s",
        ti.run_id,
        ti.task_id,
        ti.try_number,
        context.get("exception"),
        ti.log_url,
    )


@dag(
    dag_id="fruits_pipeline",
    # Each night at 02:00 UTC processes the day that just ended: a data-interval timetable gives
    # the run at D+1 02:00 the logical date D 02:00 (Airflow 3's plain cron string would give it
    # D+1), and a backfill from D1 to D3 02:00 makes one run per date D1, D2, D3.
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=DEPLOYMENT.run_timeout_s),
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=DEPLOYMENT.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(seconds=DEPLOYMENT.task_timeout_s),
        "on_failure_callback": report_failure,
    },
    params={
        "run_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Run date",
            description="Whose photos to process (YYYY-MM-DD). Empty: the date of the run's "
            "logical date (a night: the day that just ended), else of its run-after time.",
        ),
        "input_prefix": Param(
            None,
            type=["null", "string"],
            title="Input prefix",
            description="Key prefix of the photos in the lake bucket. Empty: fruits_config's.",
        ),
        "pca_variance": Param(
            RunConfig.default("pca_variance"),
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            title="PCA target variance",
            description="k = the fewest components explaining this share of the variance.",
        ),
        "pca_k": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=FEATURE_SIZE,
            title="PCA k (optional)",
            description="A fixed number of components; overrides the target variance.",
        ),
        "platform": Param(
            DEPLOYMENT.default_platform.value,
            enum=list(PLATFORMS),
            title="Platform",
            description="emr (production), local (Spark local mode), databricks.",
        ),
    },
    tags=["fruits", "spark", "emr", "databricks", "azure"],
    doc_md=__doc__,
)
def fruits_pipeline():
    nights_in_order = WaitForEarlierNights(  # a backfill runs several nights at once
        task_id="wait_for_earlier_nights",
        poll_interval_s=DEPLOYMENT.poll_interval_s,
        wait_timeout=timedelta(seconds=DEPLOYMENT.run_timeout_s),
    )
    config = resolve_config()  # each setting is also an XCom of its own: config["region"]
    nights_in_order >> config
    photos = find_new_photos(config)  # none: the night succeeds here, nothing published
    with TaskGroup("setup", tooltip="the code, the weights, the jobs; the night cleared") as setup:
        code_uri = upload_spark_jobs(config)
        check_weights(config)
        jobs = plan_spark_jobs(config)
        clear_night_outputs(config)
    emr_group, emr_cluster = on_emr(config, jobs, code_uri)
    platforms = {
        Platform.EMR: emr_group,
        Platform.LOCAL: on_local(config, jobs, code_uri),
        Platform.DATABRICKS: on_databricks(config, jobs, code_uri),
    }
    platform = choose_platform(config, {p.value: g.group_id for p, g in platforms.items()})
    chain(photos, setup, platform, list(platforms.values()))
    chain(list(platforms.values()), publish(config, emr_cluster.task_id))


def on_emr(config, jobs, code_uri) -> tuple[TaskGroup, CreateRunClusterOperator]:
    """One cluster per run, a step and a watcher per job; the cluster always terminated."""
    with TaskGroup("emr", tooltip="an EMR cluster per run, one step per job") as group:
        job_flow = emr_job_flow(config, code_uri)
        aws = {"aws_conn_id": DEPLOYMENT.aws_conn_id, "region_name": config["region"]}
        create_cluster = CreateRunClusterOperator(  # a retried create reuses the run's cluster
            task_id="create_emr_cluster",
            job_flow_overrides=job_flow,
            emr_conn_id=None,  # the whole config is above: no hidden defaults from a connection
            **aws,
        )
        steps = emr_steps(jobs, code_uri)
        emr_path = [job_flow, create_cluster, steps]
        for name in JOB_ORDER:
            add_step = EmrAddStepsOperator(
                task_id=f"add_{name}_step",
                job_flow_id=create_cluster.output,
                steps=steps[name],
                retries=0,  # a retried add would run the step twice (apache/airflow#28704)
                **aws,
            )
            watch_step = WatchStepSensor(
                task_id=f"watch_{name}_step",
                job_flow_id=create_cluster.output,
                step_id=add_step.output,  # the ids of the steps added: this job's one
                poke_interval=DEPLOYMENT.poll_interval_s,
                max_attempts=DEPLOYMENT.spark_wait_s // DEPLOYMENT.poll_interval_s,
                timeout=DEPLOYMENT.spark_wait_s,
                deferrable=DEPLOYMENT.deferrable,
                execution_timeout=SPARK_WAIT,
                # Throttling or a 5xx that outlasts botocore's attempts: poll the same step
                # again. A failed step is final (re-run the date instead).
                retry_policy=RETRY_TRANSIENT_AWS_ERRORS,
                **aws,
            )
            emr_path += [add_step, watch_step]
        # Terminates every cluster tagged with this run. Its setups include the job flow, so it
        # also runs when every try of the create failed after a cluster was started.
        terminate_cluster = TerminateRunClustersOperator(
            task_id="terminate_emr_cluster", job_flow=job_flow, **aws
        ).as_teardown(setups=[job_flow, create_cluster])
        chain(*emr_path, terminate_cluster)
    return group, create_cluster


def on_local(config, jobs, code_uri) -> TaskGroup:
    """The same jobs with Spark in local mode, inputs staged from S3."""
    with TaskGroup("local", tooltip="the same jobs, Spark in local mode") as group:
        chain(
            *(
                run_locally.override(task_id=f"run_{name}_locally")(config, jobs[name], code_uri)
                for name in JOB_ORDER
            )
        )
    return group


def on_databricks(config, jobs, code_uri) -> TaskGroup:
    """The same jobs as one Databricks job on a job cluster."""
    with TaskGroup("databricks", tooltip="the same jobs as one Databricks job") as group:
        databricks_job = databricks_job_settings(config, jobs, code_uri)
        define_job = DatabricksCreateJobsOperator(  # creates the named job, or resets it
            task_id="define_databricks_job",
            json=databricks_job["settings"],
            databricks_conn_id=DEPLOYMENT.databricks_conn_id,
        )
        run_job = DatabricksRunNowOperator(
            task_id="run_on_databricks",
            job_id=define_job.output,
            json={"idempotency_token": databricks_job["idempotency_token"]},
            forward_dag_params=False,  # the job's arguments are in its tasks, not the run form
            databricks_conn_id=DEPLOYMENT.databricks_conn_id,
            polling_period_seconds=DEPLOYMENT.poll_interval_s,
            deferrable=DEPLOYMENT.deferrable,
            execution_timeout=SPARK_WAIT * len(JOB_ORDER),  # the job's timeout_seconds, and more
            retries=0,  # a failed job run is final, like a failed EMR step; re-run the date
        )
        release = release_databricks_run(run_job.task_id).as_teardown(setups=define_job)
        chain(databricks_job, define_job, run_job, release)
    return group


def publish(config, emr_cluster_task: str) -> TaskGroup:
    """Copy the night's partitions and models to Azure, verify, point LATEST.json at them (and
    on EMR, say what the cluster cost, from the task that created it)."""
    with TaskGroup("publish", tooltip="S3 -> Azure Blob, verified, LATEST.json") as group:
        # After whichever platform ran: the other two are skipped.
        copies = plan_export.override(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(config)
        copy_to_azure = S3ToAzureBlobStorageOperator.partial(
            task_id="copy_to_azure",
            aws_conn_id=DEPLOYMENT.aws_conn_id,
            wasb_conn_id=DEPLOYMENT.wasb_conn_id,
            create_container=True,
            replace=True,  # the target folder is this run's own, emptied before each try
            s3_verify=DEPLOYMENT.s3_verify,
            pre_execute=empty_copy_target,
        ).expand_kwargs(copies)  # one copy per folder of the night's outputs
        chain(copy_to_azure, verify_and_publish(config, emr_cluster_task))
    return group


@task(multiple_outputs=True)
def resolve_config(params=None, dag_run=None) -> dict:
    """Validate every setting before anything is created: the run's config, which every later
    task is given (`with_run_config`), and each setting an XCom the operators template from."""
    try:
        variable = parse_variable(Variable.get("fruits_config", default=None))
        run_date = run_date_of(params["run_date"], dag_run.logical_date, dag_run.run_after)
        config = RunConfig.build({**params, "run_date": run_date}, variable, DEPLOYMENT)
        check_connections_exist(*connections_needed(config.platform))
    except ConfigError as error:
        raise AirflowFailException(f"invalid configuration: {error}") from None
    return config.to_dict()


@task
@with_run_config
def plan_export(run: RunConfig, dag_run=None) -> list[dict]:
    target = night_export_target(run, dag_run)
    return export.export_copies(export.night_sources(run), target, s3_region=run.region)


def connections_needed(platform: Platform) -> list[str]:
    """Every platform reads and writes the lake and publishes to Azure."""
    needed = [DEPLOYMENT.aws_conn_id, DEPLOYMENT.wasb_conn_id]
    return needed + [DEPLOYMENT.databricks_conn_id] if platform == Platform.DATABRICKS else needed


def check_connections_exist(*conn_ids: str) -> None:
    for conn_id in conn_ids:
        try:
            BaseHook.get_connection(conn_id)
        except Exception:  # AirflowNotFoundException; the message says nothing more
            raise ConfigError(
                f"connection {conn_id!r} is missing: create it in Airflow (see "
                "docs/deploy-aws.md, step 5) or set FRUITS_AWS_CONN_ID / FRUITS_WASB_CONN_ID / "
                "FRUITS_DATABRICKS_CONN_ID"
            ) from None


@task
@with_run_config
def upload_spark_jobs(run: RunConfig) -> str:
    return code_bundle.upload_bundle(
        lake_hook(run), run.lake_bucket, run.code_prefix, SPARK_JOBS_DIR
    )


@task
@with_run_config
def check_weights(run: RunConfig) -> dict:
    return weights.verify_weights(lake_hook(run), run.weights_uri, run.weights_sha256)


@task(multiple_outputs=True)
@with_run_config
def plan_spark_jobs(run: RunConfig) -> dict:
    return {job.name: job.to_dict() for job in pipeline_jobs(run)}


@task.short_circuit
@with_run_config
def find_new_photos(run: RunConfig) -> int:
    """How many photos the night has. None: the night succeeds here, says so, and publishes
    nothing (every later task is skipped, so no cluster is made and no copy is duplicated)."""
    photos = lake.count_photos(lake_hook(run), run.lake_bucket, run.input_prefix_of_night)
    if not photos:
        log.info("No new photos under %s/: nothing to do for %s.", run.input_uri, run.run_date)
    else:
        log.info("%d new photo(s) under %s/ for %s.", photos, run.input_uri, run.run_date)
    return photos


@task
@with_run_config
def clear_night_outputs(run: RunConfig) -> int:
    """Empty runs/<date>/, the night's vectors and its kept statistics (PCA's moments, the
    classifier's class sums and evaluation) first: whatever a failed or older run of the date
    left there, this run's outputs are all the export will find, and no later night reuses
    statistics of features this run replaces. (Featurize replaces its own partitions; the
    published copy in Azure stays until the new one is verified.)"""
    prefixes = (
        run.run_prefix,
        run.vectors_partition_prefix,
        run.partition_prefix(run.moments_prefix),
    )
    return sum(lake.clear_prefix(lake_hook(run), run.lake_bucket, prefix) for prefix in prefixes)


@task.branch
@with_run_config
def choose_platform(run: RunConfig, groups: dict[str, str]) -> str:
    """The task group of the run's platform; the others are skipped."""
    return groups[run.platform]


@task
@with_run_config
def emr_job_flow(run: RunConfig, code_uri: str, run_id=None) -> dict:
    lock = (SPARK_JOBS_DIR / code_bundle.REQUIREMENTS_LOCK).read_bytes()
    wheels = code_bundle.wheelhouse_uri(run.lake_bucket, run.code_prefix, lock)
    return emr.job_flow(run, code_uri, run_id, wheels)


@task(multiple_outputs=True)
def emr_steps(jobs: dict, code_uri: str) -> dict:
    return {
        name: [emr.step(SparkJob.from_dict(jobs[name]), code_uri, DEPLOYMENT.step_timeout_s)]
        for name in JOB_ORDER
    }


@task(multiple_outputs=True)
@with_run_config
def databricks_job_settings(run: RunConfig, jobs: dict, code_uri: str, run_id=None) -> dict:
    settings = databricks.job_settings(
        run,
        [SparkJob.from_dict(jobs[name]) for name in JOB_ORDER],
        code_uri,
        (SPARK_JOBS_DIR / code_bundle.REQUIREMENTS_LOCK).read_text(),
        timeout_s=DEPLOYMENT.step_timeout_s * len(JOB_ORDER),
    )
    return {"settings": settings, "idempotency_token": databricks.idempotency_token(run_id)}


@task
def release_databricks_run(run_task_id: str, ti=None) -> str:
    """A job cluster goes when its run ends; end a run Airflow stopped watching (timeout)."""
    run_id = ti.xcom_pull(task_ids=run_task_id, key="run_id")
    if run_id is None:
        return "no run was submitted"
    hook = DatabricksHook(databricks_conn_id=DEPLOYMENT.databricks_conn_id)
    state = RunState(**hook.get_run(run_id)["state"])
    if state.is_terminal:
        return f"run {run_id} already ended: {state.life_cycle_state} {state.result_state}"
    hook.cancel_run(run_id)
    return f"run {run_id} was {state.life_cycle_state}: cancelled"


# An S3 error that outlasts botocore's attempts while staging: try again. A failed Spark job is
# final (re-run the date), as on EMR and Databricks.
@task(execution_timeout=SPARK_WAIT, retry_policy=RETRY_ONLY_TRANSIENT_AWS_ERRORS)
@with_run_config
def run_locally(run: RunConfig, job: dict, code_uri: str) -> None:
    s3 = lake_hook(run)
    local_platform.run_job(SparkJob.from_dict(job), code_uri, s3, DEPLOYMENT.scratch_dir)


def empty_copy_target(context) -> None:
    """Before each try of a copy: its target folder emptied (the provider never overwrites)."""
    copy = context["task"]
    with suppress(ResourceNotFoundError):  # no container yet: nothing to empty
        WasbHook(wasb_conn_id=DEPLOYMENT.wasb_conn_id).delete_file(
            copy.container_name, copy.blob_prefix + "/", is_prefix=True, ignore_if_missing=True
        )


@task(outlets=[PUBLISHED_IN_AZURE, WRITTEN_IN_S3])
@with_run_config
def verify_and_publish(
    run: RunConfig, emr_cluster_task: str, dag_run=None, ti=None, outlet_events=None
) -> dict:
    sources, target = export.night_sources(run), night_export_target(run, dag_run)
    facts = {  # read first: a night whose outputs lack them is not published
        "run_date": run.run_date,
        "platform": run.platform.value,
        **night_facts(lake_hook(run), run),
        **emr_cost(run, ti, emr_cluster_task),
    }
    pointer = export.verify_and_publish(
        lake_hook(run),
        WasbHook(wasb_conn_id=DEPLOYMENT.wasb_conn_id),
        sources,
        target,
        dag_run.run_id,
    )
    facts["duration_s"] = round((datetime.now(timezone.utc) - dag_run.start_date).total_seconds())
    # Each night's event: its figures, and where its outputs are (the Assets are named, not
    # located: the bucket and container are fruits_config's).
    outlet_events[WRITTEN_IN_S3].extra = {
        **facts,
        **{folder: run.uri(prefix) + "/" for folder, prefix in sources.prefixes.items()},
    }
    outlet_events[PUBLISHED_IN_AZURE].extra = {
        **facts,
        "container": target.container,
        "prefix": pointer["prefix"],  # as LATEST.json says it
        "latest": f"{target.date_prefix}/{export.LATEST}",
    }
    return pointer


def emr_cost(run: RunConfig, ti, cluster_task: str) -> dict:
    """On EMR, the cluster's instance-hours so far at the configured price; nothing elsewhere.
    The id is pulled from the create task (named by the operator itself), not passed as its
    `.output`: that would make the create an upstream of verify_and_publish, which the branch
    skips on the other platforms, and skip the publishing with it."""
    if run.platform is not Platform.EMR:
        return {}
    cluster_id = ti.xcom_pull(task_ids=cluster_task)
    client = EmrHook(aws_conn_id=DEPLOYMENT.aws_conn_id, region_name=run.region).conn
    return emr_cost_estimate(client, cluster_id, run.emr.usd_per_normalized_hour)


def lake_hook(run: RunConfig) -> S3Hook:
    return S3Hook(
        aws_conn_id=DEPLOYMENT.aws_conn_id, region_name=run.region, verify=DEPLOYMENT.s3_verify
    )


def night_export_target(run: RunConfig, dag_run) -> export.ExportTarget:
    return export.export_target(run, dag_run.run_id, dag_run.clear_number or 0)


fruits_pipeline()
