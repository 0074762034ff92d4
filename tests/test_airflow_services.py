"""The DAG under real Airflow services: `airflow standalone` (api-server, scheduler with the
LocalExecutor, dag-processor, triggerer as processes), platform local (Spark local mode), over
a moto server (in this process, so a fake EMR can drive it) and Azurite. Every way a run
starts: the nightly schedule, the REST API without a logical date (Airflow 3's default) and
with one (as the UI's form does), `airflow dags trigger`, a backfill; and re-runs.

One standalone for the module; the runs follow each other (fixtures order them):
1. unpausing the DAG makes the scheduler create the latest night, which has no photos: it
   succeeds, says so, and publishes nothing;
2. the CLI trigger, without a logical date, processes its run-after date (today): it looks for
   today's photos only (other dates have some), finds none, and stops there;
3. night D1 through the REST API without a logical date (its run_after on D1): the lake it
   leaves is kept;
4. a backfill of D1..D3 with max_active_runs 3 runs D1 again, D2 for the first time and D3
   (no photos), each night's work only after the night before has ended: D1's outputs are the
   first run's, object for object, D2 refits over both nights, D3 adds nothing;
5. one night on platform emr, triggered with a logical date (as the UI's form sets one): its
   steps watched by deferrable sensors in the real triggerer, the cluster terminated by the
   teardown (FakeEmr plays the cluster in moto's backend).
"""

from __future__ import annotations

import itertools
import json
import urllib.request
from datetime import datetime, time, timedelta, timezone
from time import sleep

import pytest
from azure.storage.blob import BlobServiceClient

from airflow_services import AirflowServices, Run, airflow_standalone, port_is_free
from fake_cloud import FakeEmr, clusters, expected_export
from fruits.export import attempt_name
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

pytestmark = pytest.mark.services

DAG_ID = "fruits_pipeline"
NOW = datetime.now(timezone.utc)
TODAY = NOW.date()
# With catchup=False, unpausing makes the latest night whose 02:00 UTC run time has passed.
LAST_NIGHT = (NOW - timedelta(hours=2)).date() - timedelta(days=1)
# Two nights with photos show what a backfill leaves; each costs minutes of CI. The backfill
# takes a third date, without photos (seconds): three runs at once, kept in date order.
NIGHTS = [TODAY - timedelta(days=days) for days in (10, 9)]
BACKFILL = [*NIGHTS, NIGHTS[-1] + timedelta(days=1)]
EMR_NIGHT = TODAY - timedelta(days=5)  # last of the module: its outputs are the fake EMR's
CLASSES = ("Apple Braeburn", "Banana")  # 2 classes x 2 photos x Training/Test per night
LAKE_OUTPUTS = ("features", "quarantine", "vectors", "moments", "runs")


def at(day, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, pretrained_weights):
    """moto + Azurite, the lake seeded: weights, 8 real photos for each of the two nights (none
    for the backfill's third date, nor for today, the CLI trigger's), a note (not a photo)
    landed for the scheduled night, 2 photos for the EMR night. moto runs in this process:
    FakeEmr drives its EMR backend."""
    workdir = tmp_path_factory.mktemp("airflow-services")
    with local_cloud(workdir, threaded_moto=True) as endpoints:
        reset = urllib.request.Request(f"{endpoints.s3_url}/moto-api/reset", b"", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 (an earlier module's moto state)
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        weights_uri, sha256 = lake.upload_weights(s3, pretrained_weights)
        for offset, night in enumerate(NIGHTS):  # none for today: the CLI trigger's date
            land_photos(s3, night.isoformat(), CLASSES, per_split=2, offset=2 * offset)
        s3.put_object(Bucket=lake.LAKE_BUCKET, Key=f"landing/{LAST_NIGHT}/notes.txt", Body=b"-")
        land_photos(s3, EMR_NIGHT.isoformat(), CLASSES[:1], per_split=1)
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
        # The gate waiting for earlier nights, and the EMR steps' deferrable watchers, poll often.
        "FRUITS_POLL_INTERVAL_S": "3",
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
    }
    # Under a loaded machine (CI runners, parallel jobs) the components take minutes to start.
    with airflow_standalone(workdir / "airflow-home", env, DAG_ID, timeout=600) as services:
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
def cli_run(airflow, night) -> Run:
    result = airflow.cli("dags", "trigger", DAG_ID, "--output", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith("[{")]  # not logs
    assert printed, result.stdout[-3000:]
    run_id = json.loads(printed[-1])[0]["dag_run_id"]
    return airflow.wait_for_run(run_id)


@pytest.fixture(scope="module")
def first_night(airflow, cli_run, cloud) -> tuple[Run, dict]:
    """D1 through the REST API without a logical date (its run_after on D1); the lake it leaves."""
    run = airflow.wait_for_run(airflow.trigger({}, None, run_after=at(NIGHTS[0], 9, 30)))
    return run, lake_state(cloud["s3"], NIGHTS[:1])


@pytest.fixture(scope="module")
def backfill(airflow, first_night) -> list[Run]:
    """A backfill of the 3 dates, running again those that have a run, up to 3 at once:
    logical dates D 02:00, so the range ends at the last one's 02:00. The runs as the REST API
    lists them, unsorted here."""
    # SQLite has one writer: a backfill created while the scheduler is still finishing the night
    # before can time out on the lock, be deleted half created, and stop the scheduler holding
    # one of its runs (ObjectDeletedError in _schedule_dag_run, seen under load). The database
    # now waits 60 s for the lock (localdev.emulators); settling first costs little more.
    sleep(15)
    backfill_id = airflow.backfill(
        BACKFILL[0], at(BACKFILL[-1], 2), max_active_runs=3, reprocess="completed"
    )
    airflow.wait_for_backfill(backfill_id)
    runs = [r for r in airflow.runs() if r.logical_date and _logical(r).date() in BACKFILL]
    return [airflow.run(run.run_id) for run in runs]


def _logical(run: Run) -> datetime:
    return datetime.fromisoformat(run.logical_date) if run.logical_date else run.run_after_time


def lake_state(s3, nights: list) -> dict[str, object]:
    """Every output object of the lake by name, Spark's random write id taken out of part-file
    names, with its bytes' MD5; a model's files by name only (Spark ML writes its save time and
    random uids in their metadata, and LBFGS sums its gradients in the order tasks finish); a
    night's features and PCA vectors by their rows, every value exact (which part file, and
    where in it, a photo lands follows the order the local file system lists the staged photos
    in)."""
    state: dict[str, object] = {}
    for root in LAKE_OUTPUTS:
        for name, meta in list_lake(s3, root).items():
            exact = "/model/" not in name and not name.endswith(".parquet")
            state[f"{root}/{without_write_ids([name])[0]}"] = meta["etag"] if exact else None
    for day in nights:
        for table, columns in ROWS_OF.items():
            rows = read_parquet_rows(s3, table.format(day=day), columns)
            state[f"{table.format(day=day)} rows"] = sorted(tuple(r.values()) for r in rows)
    return state


ROWS_OF = {  # the Parquet outputs compared by their rows
    "features/ingest_date={day}": ["path", "label", "split", "features"],
    "quarantine/ingest_date={day}": ["path", "error"],
    "vectors/ingest_date={day}": ["path", "label", "split", "pca_features"],
}


def assert_published(airflow: AirflowServices, cloud: dict, run: Run, night: str) -> None:
    """The run succeeded, wrote runs/<night>/ in the lake, and is the night's copy in Azure."""
    assert run.state == "success", airflow.explain(run)
    written = list_lake(cloud["s3"], f"runs/{night}")
    assert "classify/metrics.json" in written, sorted(written)
    latest = latest_published(cloud["container"], "fruits", night)
    assert latest is not None and latest["run_id"] == run.run_id, latest


def assert_nothing_to_do(airflow: AirflowServices, cloud: dict, run: Run, night: str) -> None:
    """A night without photos: success, every task after the count skipped, nothing written."""
    assert run.state == "success", airflow.explain(run)
    assert run.tasks["find_new_photos"] == "success"
    later = {task: state for task, state in run.tasks.items() if task not in FIRST_TASKS}
    assert set(later.values()) == {"skipped"}, later
    assert list_lake(cloud["s3"], f"runs/{night}") == {}
    assert latest_published(cloud["container"], "fruits", night) is None


FIRST_TASKS = ("wait_for_earlier_nights", "resolve_config", "find_new_photos")


def test_the_nightly_schedule_processes_the_day_that_just_ended(airflow, cloud, night):
    assert night.run_type == "scheduled"
    assert night.logical_date is not None
    run_after = night.run_after_time
    assert (run_after.hour, run_after.minute) == (2, 0)
    assert run_after.date() - timedelta(days=1) == LAST_NIGHT
    said = airflow.task_log(night.run_id, "find_new_photos")
    assert f"No new photos under s3://fruits-lake/landing/{LAST_NIGHT}/" in said  # a note is none
    assert_nothing_to_do(airflow, cloud, night, LAST_NIGHT.isoformat())


def test_the_cli_trigger_without_logical_date_processes_its_run_after_date(airflow, cloud, cli_run):
    """Photos are landed for other dates (the nights D1, D2, the EMR night), none for today: the
    run looked for today's photos, and only today's, found none, and stopped there. (A night
    with photos, started without a logical date, is D1 below: the REST API's default.)"""
    assert cli_run.logical_date is None
    assert cli_run.run_after_time.date() == TODAY
    said = airflow.task_log(cli_run.run_id, "find_new_photos")
    assert f"No new photos under s3://fruits-lake/landing/{TODAY}/" in said, said[-2000:]
    assert_nothing_to_do(airflow, cloud, cli_run, TODAY.isoformat())
    assert list_lake(cloud["s3"], "features") == {}  # no other date's photos either


def test_a_rest_trigger_without_logical_date_runs_its_run_after_night(airflow, cloud, first_night):
    run, _ = first_night
    assert run.logical_date is None and run.run_after_time.date() == NIGHTS[0]
    assert_published(airflow, cloud, run, NIGHTS[0].isoformat())
    features = read_parquet_rows(cloud["s3"], f"features/ingest_date={NIGHTS[0]}", ["path"])
    assert len(features) == 8 and all(f"/landing/{NIGHTS[0]}/" in r["path"] for r in features)


def test_a_backfill_runs_each_date_in_order_and_reruns_a_night_exactly(
    airflow, cloud, first_night, backfill
):
    """A backfill's own max_active_runs (3 here) lets its runs be running at once: the DAG's
    max_active_runs=1 does not cap it (airflow/models/backfill.py `_create_backfill`, and the
    scheduler's `_start_queued_dagruns` counting a backfill's runs against the backfill's
    limit). Each night's work (from resolve_config on) must still start after the night
    before has ended: by the runs' own timestamps, from the REST API. D1 run again leaves the
    bytes its first run left; D2, new, refits over both nights from D1's kept statistics; D3,
    without photos, waits its turn too and adds nothing."""
    _, lake_before = first_night
    assert [run.state for run in backfill] == ["success"] * len(BACKFILL), "\n".join(
        airflow.explain(run) for run in backfill
    )
    assert sorted(_logical(run).date() for run in backfill) == BACKFILL
    by_work_start = sorted(backfill, key=lambda run: run.task_started("resolve_config"))
    assert [_logical(run).date() for run in by_work_start] == BACKFILL  # ran in date order
    for before, after in itertools.pairwise(by_work_start):
        assert after.task_started("resolve_config") >= before.ended, (before, after)
    # ...though the backfill had all three running at once: the gate, not Airflow, kept them
    # apart (each run started before the first night ended).
    starts = [datetime.fromisoformat(run.start_date) for run in by_work_start]
    assert all(start < by_work_start[0].ended for start in starts), (starts, by_work_start[0])

    lake_after = lake_state(cloud["s3"], NIGHTS)
    assert {name: lake_after.get(name) for name in lake_before} == lake_before  # same bytes
    added = set(lake_after) - set(lake_before)
    assert added and all(str(NIGHTS[1]) in name for name in added), sorted(added)
    report = read_json(cloud["s3"], f"runs/{NIGHTS[1]}/pca/report.json")
    assert report["nights"] == [day.isoformat() for day in NIGHTS]
    assert report["rows"] == {"fitted": 8, "projected": 8}  # 2 nights x 4 Training; the night
    features = read_parquet_rows(cloud["s3"], f"features/ingest_date={NIGHTS[1]}", ["path"])
    assert len(features) == 8 and all(f"/landing/{NIGHTS[1]}/" in r["path"] for r in features)

    *with_photos, without_photos = by_work_start  # in date order, as checked above
    assert_nothing_to_do(airflow, cloud, without_photos, BACKFILL[-1].isoformat())
    for run, day in zip(with_photos, NIGHTS, strict=True):
        assert_published(airflow, cloud, run, day.isoformat())
        # One published copy of the date: the last run's (D1's first copy was replaced).
        latest = latest_published(cloud["container"], "fruits", day.isoformat())
        copies = {
            "/".join(blob.name.split("/")[:4]) + "/"
            for blob in cloud["container"].list_blobs(name_starts_with=f"fruits/runs/{day}/")
            if not blob.name.endswith("/LATEST.json")
        }
        assert copies == {latest["prefix"]}, copies
        folder = latest["prefix"].split("/")[3]
        assert folder == f"attempt={attempt_name(run.run_id)}", folder


def test_the_harness_reads_task_logs_and_sets_variables(airflow, night):
    # What explain() shows when a run fails: the task's own log lines, through the REST API.
    assert "Done. Returned value was" in airflow.task_log(night.run_id, "resolve_config")
    airflow.set_variable("fruits_probe", {"set": 1})
    airflow.set_variable("fruits_probe", {"set": 2})  # the second time replaces it
    assert airflow.request("GET", "/api/v2/variables/fruits_probe")["value"] == '{"set": 2}'


@pytest.fixture(scope="module")
def emr_night(airflow, cloud) -> tuple[Run, FakeEmr]:
    """One night on platform emr, the module's last test (its outputs are the fake cluster's,
    which no later local night may read): FakeEmr keeps each
    step RUNNING a few seconds, so its watcher finds it running, defers, and the triggerer sees
    it complete."""
    airflow.unpause()  # as the module's first test left it (this test may run alone)
    fake_emr = FakeEmr(cloud["s3"], step_seconds=8)
    fake_emr.start()
    try:
        run_id = airflow.trigger({"platform": "emr"}, logical_date=at(EMR_NIGHT, 2))
        run = airflow.wait_for_run(run_id)
    finally:
        fake_emr.stop.set()
        fake_emr.join()
    if fake_emr.error:
        raise fake_emr.error
    return run, fake_emr


def test_an_emr_night_under_real_services(airflow, cloud, emr_night):
    """The deferrable EmrStepSensor runs in the real triggerer (aiobotocore over HTTP to moto),
    the teardown from the real scheduler: the night succeeds, its steps' watchers deferred, the
    cluster ends TERMINATED, and Azure has the night's copy."""
    run, fake_emr = emr_night
    assert run.state == "success", airflow.explain(run)
    assert datetime.fromisoformat(run.logical_date) == at(EMR_NIGHT, 2)  # as the UI's form
    assert fake_emr.ran == ["featurize", "pca", "classify"]
    assert run.tasks["emr.terminate_emr_cluster"] == "success"
    for job in ("featurize", "pca", "classify"):
        said = airflow.task_log(run.run_id, f"emr.watch_{job}_step")
        assert "Pausing task as DEFERRED" in said, said[-2000:]  # the task runner deferred it
        assert "Trigger fired event" in said, said[-2000:]  # the triggerer's own line
    cluster_id = airflow.xcom(run.run_id, "emr.create_emr_cluster")
    (cluster,) = [c for c in clusters(cloud["endpoints"].s3_url) if c["Id"] == cluster_id]
    assert cluster["Status"]["State"] == "TERMINATED"
    latest = latest_published(cloud["container"], "fruits", EMR_NIGHT.isoformat())
    assert latest is not None and latest["run_id"] == run.run_id, latest
    copied = {  # each table's partition and the run's folder, as LATEST.json names them
        f"{folder}/{blob.name[len(prefix) :]}"
        for folder, prefix in latest["folders"].items()
        for blob in cloud["container"].list_blobs(name_starts_with=prefix)
    }
    assert copied == expected_export() | {"run/_EXPORT_MANIFEST.json"}
