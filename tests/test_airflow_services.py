"""The DAG under real Airflow services: `airflow standalone` (api-server, scheduler with the
LocalExecutor, dag-processor, triggerer as processes), platform local (Spark local mode), over
a moto server and Azurite. Every way a run starts: the nightly schedule, the REST API and
`airflow dags trigger` without a logical date (Airflow 3's default), a backfill; and a re-run.

One standalone for the module. The runs follow each other (fixtures order them): the night
first (unpausing the DAG creates it, and no run starts while the DAG is paused), then a REST
trigger of the first backfill date, the CLI trigger, and the 3-date backfill, which re-runs
that first date.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone

import pytest
from azure.storage.blob import BlobServiceClient

from airflow_services import AirflowServices, Run, airflow_standalone, port_is_free
from fruits.lake import attempt_name
from lake_checks import (
    land_photos,
    latest_published,
    list_lake,
    read_json,
    read_parquet_rows,
    without_write_ids,
)
from localdev import lake
from localdev.emulators import REPO, local_cloud

pytestmark = pytest.mark.e2e

DAG_ID = "fruits_pipeline"
NOW = datetime.now(timezone.utc)
TODAY = NOW.date()
# With catchup=False, unpausing makes the latest night whose 02:00 UTC run time has passed.
LAST_NIGHT = (NOW - timedelta(hours=2)).date() - timedelta(days=1)
BACKFILLED = [TODAY - timedelta(days=days) for days in (10, 9, 8)]
CLASSES = ("Apple Braeburn", "Banana")  # 2 classes x 2 photos x Training/Test per night


def at(day, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, pretrained_weights):
    """moto + Azurite, the lake seeded: weights, and 8 real photos for each night we run."""
    workdir = tmp_path_factory.mktemp("airflow-services")
    with local_cloud(workdir) as endpoints:
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        weights_uri, sha256 = lake.upload_weights(s3, pretrained_weights)
        for offset, night in enumerate([*BACKFILLED, LAST_NIGHT, TODAY]):
            land_photos(s3, night.isoformat(), CLASSES, per_split=2, offset=2 * offset)
        container = BlobServiceClient.from_connection_string(
            endpoints.azurite_connection_string
        ).get_container_client(lake.CONTAINER)
        yield {
            "workdir": workdir,
            "endpoints": endpoints,
            "s3": s3,
            "container": container,
            "config": lake.fruits_config(weights_uri, sha256),
        }


@pytest.fixture(scope="module")
def airflow(cloud):
    """One standalone for the module; afterwards, nothing it started may be left running."""
    workdir, endpoints = cloud["workdir"], cloud["endpoints"]
    env = {
        **endpoints.airflow_env(),
        **lake.variable_env(cloud["config"]),
        "FRUITS_DEFAULT_PLATFORM": "local",
        # One scratch folder for the module: only the first run converts the weights.
        "FRUITS_SCRATCH_DIR": str(workdir / "scratch"),
        "FRUITS_RETRY_DELAY_S": "5",
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
    }
    with airflow_standalone(workdir / "airflow-home", env, DAG_ID) as services:
        yield services
    assert services.leftovers == [], f"processes left running: {services.leftovers}"
    assert all(port_is_free(port) for port in services.ports), services.ports


@pytest.fixture(scope="module")
def night(airflow: AirflowServices) -> Run:
    """Unpausing the DAG lets the scheduler create the latest scheduled night, and run it."""
    assert airflow.runs() == []  # paused at creation: nothing ran before
    airflow.unpause()
    return airflow.wait_for_run(airflow.wait_for_new_run("scheduled", known=set()))


@pytest.fixture(scope="module")
def rest_run(airflow, night, cloud) -> tuple[Run, dict]:
    """POST dagRuns with logical_date null and a run_after on the first backfill date; the
    outputs it left, for the re-run by the backfill to compare with."""
    run_id = airflow.trigger({}, logical_date=None, run_after=at(BACKFILLED[0], 9, 30))
    run = airflow.wait_for_run(run_id)
    return run, outputs_of(cloud["s3"], BACKFILLED[0].isoformat()) if run_succeeded(run) else {}


@pytest.fixture(scope="module")
def cli_run(airflow, rest_run) -> Run:
    result = airflow.cli("dags", "trigger", DAG_ID, "--output", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith("[{")]  # not logs
    assert printed, result.stdout[-3000:]
    run_id = json.loads(printed[-1])[0]["dag_run_id"]
    return airflow.wait_for_run(run_id)


@pytest.fixture(scope="module")
def backfill(airflow, cli_run) -> list[Run]:
    """A backfill of 3 dates: logical dates D 02:00, so the range ends at the last one's 02:00."""
    airflow.backfill(BACKFILLED[0], at(BACKFILLED[-1], 2))
    runs = sorted(airflow.runs("backfill"), key=lambda run: run.logical_date)
    return [airflow.wait_for_run(run.run_id) for run in runs]


def run_succeeded(run: Run) -> bool:
    return run.state == "success"


def outputs_of(s3, night: str) -> dict:
    """What a night's outputs say, independent of the run that wrote them (Spark's random
    part-file ids and the staged photos' scratch paths differ from one run to the next)."""
    prefix = f"runs/{night}"
    report = read_json(s3, f"{prefix}/pca/report.json")
    metrics = read_json(s3, f"{prefix}/classify/metrics.json")
    rows = read_parquet_rows(s3, f"{prefix}/features", ["label", "split", "features"])
    return {
        "objects": without_write_ids(list_lake(s3, prefix)),
        "features": sorted((r["label"], r["split"], r["features"]) for r in rows),
        "pca": {key: report[key] for key in ("k", "explained_variance_at_k")},
        "classify": {key: metrics[key] for key in ("accuracy", "macro_f1", "counts")},
    }


def assert_published(airflow: AirflowServices, cloud: dict, run: Run, night: str) -> None:
    """The run succeeded, wrote runs/<night>/ in the lake, and is the night's copy in Azure."""
    assert run.state == "success", airflow.explain(run)
    written = list_lake(cloud["s3"], f"runs/{night}")
    assert "classify/metrics.json" in written, sorted(written)
    latest = latest_published(cloud["container"], "fruits", night)
    assert latest is not None and latest["run_id"] == run.run_id, latest


def test_the_nightly_schedule_processes_the_day_that_just_ended(airflow, cloud, night):
    assert night.run_type == "scheduled"
    assert night.logical_date is not None
    run_after = night.run_after_time
    assert (run_after.hour, run_after.minute) == (2, 0)
    assert run_after.date() - timedelta(days=1) == LAST_NIGHT
    assert_published(airflow, cloud, night, LAST_NIGHT.isoformat())


def test_a_rest_trigger_without_logical_date_processes_its_run_after_date(airflow, cloud, rest_run):
    run, _ = rest_run
    assert run.logical_date is None and run.run_after_time.date() == BACKFILLED[0]
    assert_published(airflow, cloud, run, BACKFILLED[0].isoformat())


def test_the_cli_trigger_without_logical_date_processes_its_run_after_date(airflow, cloud, cli_run):
    assert cli_run.logical_date is None
    assert_published(airflow, cloud, cli_run, cli_run.run_after_time.date().isoformat())


def test_a_backfill_of_3_dates_runs_each_date_once(airflow, cloud, backfill):
    assert [run.state for run in backfill] == ["success"] * 3, "\n".join(
        airflow.explain(run) for run in backfill
    )
    assert [datetime.fromisoformat(run.logical_date) for run in backfill] == [
        at(day, 2) for day in BACKFILLED
    ]
    for run, day in zip(backfill, BACKFILLED, strict=True):
        assert_published(airflow, cloud, run, day.isoformat())


def test_a_rerun_of_a_date_gives_the_same_outputs(cloud, rest_run, backfill):
    first, before = rest_run
    assert before, "the first run of the date failed: see the REST trigger's test"
    assert backfill[0].state == "success"
    after = outputs_of(cloud["s3"], BACKFILLED[0].isoformat())
    assert after["objects"] == before["objects"]
    assert after["features"] == before["features"] and len(after["features"]) > 0
    assert (after["pca"], after["classify"]) == (before["pca"], before["classify"])
    # One published copy of the date: the re-run's.
    copies = {
        "/".join(blob.name.split("/")[:3])
        for blob in cloud["container"].list_blobs(name_starts_with=f"fruits/{BACKFILLED[0]}/")
        if not blob.name.endswith("/LATEST.json")
    }
    assert copies == {f"fruits/{BACKFILLED[0]}/{attempt_name(backfill[0].run_id)}"}, copies


def test_the_harness_reads_task_logs_and_sets_variables(airflow, night):
    # What explain() shows when a run fails: the task's own log lines, through the REST API.
    assert "Done. Returned value was" in airflow.task_log(night.run_id, "resolve_config")
    airflow.set_variable("fruits_probe", {"set": 1})
    airflow.set_variable("fruits_probe", {"set": 2})  # the second time replaces it
    assert airflow.request("GET", "/api/v2/variables/fruits_probe")["value"] == '{"set": 2}'
