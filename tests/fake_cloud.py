"""What the DAG-over-the-wire tests share: the cloud on loopback, seeded; the cluster's work.

moto (S3, EMR) and Azurite run for real on loopback; what no emulator does is run Spark on a
cluster. `FakeEmr` plays the cluster from a thread (moto accepts steps but never runs them) and
`write_outputs` a job's part: it writes the files the job would write under its `--output` and
`--quarantine` URIs, so the export that follows has real objects to copy.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

from azure.storage.blob import BlobServiceClient

from localdev import lake
from localdev.emulators import REGION, local_cloud

RUN_DATE = datetime(2026, 11, 25, tzinfo=timezone.utc)
# Recognisable fake credentials (moto accepts any): none may appear in anything written.
SECRET_KEY_ID, SECRET_KEY = "AKIAFRUITSTESTKEY0001", "fruits-Secret-Do-Not-Leak-7f3a9c"
OUTPUT_FILES = {  # what each job writes under its --output (and --quarantine, --vectors)
    "featurize": ["part-00000.parquet", "_manifest.json"],
    "pca": ["model/metadata/part-00000", "basis.npz", "report.json"],
    "classify": ["metrics.json", "report.json", "report.png", "model/metadata/part-00000"],
}
SIDE_OUTPUTS = {  # what a job writes under its other output flags
    "--quarantine": ["part-0.parquet"],
    "--vectors": ["part-00000.parquet", "_manifest.json"],
}


# What the jobs write in their completion markers, as far as the DAG reads them (its night facts).
MARKERS = {
    "_manifest.json": {"counts": {"read": 3, "featurized": 2, "quarantined": 1}},
    "report.json": {
        "k": 7,
        "explained_variance_at_k": 0.951,
        "rows": {"fitted": 4, "projected": 5},
        "nights": ["2026-11-24", "2026-11-25"],
    },
    "metrics.json": {
        "accuracy": 0.75,
        "macro_f1": 0.7,
        "evaluations": {
            "prequential_night": {"accuracy": 0.5},
            "prequential_history": {"accuracy": 0.6},
        },
    },
    "classify/report.json": {
        "photos": {"quarantine_rate": 1 / 3},
        "classes": {"new": ["kiwi"]},
        "mean_shift": {"overall": {"in_spreads": 0.2}, "per_class": {"apple": {"in_spreads": 0.4}}},
    },
}


def expected_export() -> set[str]:
    """The objects a successful run exports, by folder: the night's partition of each table,
    and runs/<date>/ (its pca/ and classify/) as `run/`."""
    return (
        {f"features/{name}" for name in OUTPUT_FILES["featurize"]}
        | {f"quarantine/{name}" for name in SIDE_OUTPUTS["--quarantine"]}
        | {f"vectors/{name}" for name in SIDE_OUTPUTS["--vectors"]}
        | {f"run/{job}/{name}" for job in ("pca", "classify") for name in OUTPUT_FILES[job]}
    )


def write_outputs(s3, job: str, arguments: list[str], markers: dict | None = None) -> None:
    """What the job leaves under each output: its files, replacing what the real job replaces
    and nothing more. featurize overwrites its whole partition and deletes its quarantine
    partition; pca and classify overwrite their model/ and vectors/ folders and delete their
    report (spark_jobs/pca.py, classify.py): anything else a crashed run left under their
    --output stays, for the DAG's clear_night_outputs to remove. `markers` replaces some of
    MARKERS."""
    markers = {**MARKERS, **(markers or {})}
    flags = dict(zip(arguments, arguments[1:], strict=False))  # each flag -> the value after it
    for flag in ("--output", *SIDE_OUTPUTS):
        if flag in flags:
            bucket, key = flags[flag][len("s3://") :].split("/", 1)
            names = OUTPUT_FILES[job] if flag == "--output" else SIDE_OUTPUTS[flag]
            whole = job == "featurize" or flag != "--output"  # a partition: replaced whole
            replaced = [""] if whole else sorted({n.split("/")[0] for n in names})
            for entry in replaced:
                prefix = f"{key}/{entry}" if entry else f"{key}/"
                for old in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=old["Key"])
            for name in names:
                marker = markers.get(f"{job}/{name}", markers.get(name))
                body = json.dumps(marker or {"job": job, "file": name}).encode()
                s3.put_object(Bucket=bucket, Key=f"{key}/{name}", Body=body)


@contextmanager
def seeded_cloud(workdir: Path, weights: Path):
    """moto + Azurite, a lake with the weights and one photo landed on 2026-11-25, and the
    Airflow connections and
    Variable pointing at them (the AWS one with the recognisable fake credentials)."""
    with local_cloud(workdir, threaded_moto=True) as endpoints:
        # A threaded moto keeps its state in this process: start from an empty cloud, whatever
        # an earlier test module left there.
        reset = urllib.request.Request(f"{endpoints.s3_url}/moto-api/reset", b"", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 (loopback URL)
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        s3.put_object(
            Bucket=lake.LAKE_BUCKET, Key="landing/2026-11-25/Training/Kiwi/1.jpg", Body=b"jpeg"
        )
        weights_uri, sha256 = lake.upload_weights(s3, weights)
        connections = endpoints.airflow_env()
        aws = json.loads(connections["AIRFLOW_CONN_FRUITS_AWS"])
        aws.update(login=SECRET_KEY_ID, password=SECRET_KEY)
        env = {
            **connections,
            "AIRFLOW_CONN_FRUITS_AWS": json.dumps(aws),
            **lake.variable_env(lake.fruits_config(weights_uri, sha256)),
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield endpoints, s3
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@contextmanager
def recorded_aws_calls(access_key_id: str):
    """Every AWS operation made with this access key while inside, by botocore and aiobotocore
    (the deferrable sensors) clients: (signing name, operation), e.g. ("s3", "HeadObject")."""
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient

    calls: list[tuple[str, str]] = []
    sync_call, async_call = BaseClient._make_api_call, AioBaseClient._make_api_call

    def record(client, operation: str) -> None:
        if client._request_signer._credentials.access_key == access_key_id:
            calls.append((client.meta.service_model.signing_name, operation))

    def make_api_call(client, operation, params):
        record(client, operation)
        return sync_call(client, operation, params)

    async def make_api_call_async(client, operation, params):
        record(client, operation)
        return await async_call(client, operation, params)

    with (
        mock.patch.object(BaseClient, "_make_api_call", make_api_call),
        mock.patch.object(AioBaseClient, "_make_api_call", make_api_call_async),
    ):
        yield calls


def container(endpoints):
    service = BlobServiceClient.from_connection_string(endpoints.azurite_connection_string)
    return service.get_container_client(lake.CONTAINER)


def blobs(endpoints) -> dict[str, int]:
    """Every blob of the published container (none before the first export made it)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return {b.name: b.size for b in container(endpoints).list_blobs()}
    except ResourceNotFoundError:
        return {}


def published(endpoints, run_date: str = "2026-11-25") -> tuple[dict, set[str]]:
    """LATEST.json of the date, and the names in the folders it points at, as `<folder>/<name>`
    (the table partitions' and the run's: `features/part-….parquet`, `run/pca/report.json`)."""
    latest = json.loads(
        container(endpoints).download_blob(f"fruits/runs/{run_date}/LATEST.json").readall()
    )
    names = blobs(endpoints)
    return latest, {
        f"{folder}/{n[len(prefix) :]}"
        for folder, prefix in latest["folders"].items()
        for n in names
        if n.startswith(prefix)
    }


NORMALIZED_HOURS_PER_STEP = 8


class FakeEmr(threading.Thread):
    """Plays the cluster: completes each step moto holds, writing its outputs. The failing step
    leaves a crashed job's debris in its output folder and FAILS; the hanging one never ends by
    itself: under coreutils `timeout` (fruits.emr.step) it FAILS when its time is up, as on a
    real cluster (command-runner.jar's command exits 124), else it runs until the cluster ends."""

    def __init__(
        self,
        s3,
        failing_step: str | None = None,
        hanging_step: str | None = None,
        step_seconds: float = 0,
        markers: dict | None = None,
    ):
        super().__init__(daemon=True)
        self.s3, self.failing_step, self.hanging_step = s3, failing_step, hanging_step
        self.step_seconds = step_seconds  # how long each step runs before it ends
        self.markers = markers  # what the jobs' completion markers say, if not MARKERS
        self.stop = threading.Event()
        self.ran: list[str] = []
        self.failures: list[dict[str, str]] = []  # the FailureDetails of each failed step
        self.error: BaseException | None = None
        self.started: dict[str, float] = {}  # step id -> when the step was first seen

    def run(self) -> None:
        try:
            while not self.stop.wait(0.2):
                for cluster in moto_clusters():
                    if cluster.state.startswith("TERMINAT"):
                        continue
                    for step in cluster.steps:
                        if step.state not in ("PENDING", "RUNNING"):
                            continue
                        ran_s = time.monotonic() - self.started.setdefault(
                            step.id, time.monotonic()
                        )
                        if step.name != self.hanging_step:
                            if ran_s >= self.step_seconds:
                                self.play(cluster, step)
                        elif self.out_of_time(step, ran_s):
                            self.end_by_timeout(cluster, step)
        except BaseException as error:  # surfaced by run_dag: a dead driver must fail the test
            self.error = error

    def out_of_time(self, step, ran_s: float) -> bool:
        limit = time_limit(step.args)
        return limit is not None and ran_s >= limit

    def end_by_timeout(self, cluster, step) -> None:
        step.failure_details = {
            **failure_details(cluster, step),
            "Message": "Command exited with status 124",  # coreutils timeout's own status
        }
        self.failures.append(step.failure_details)
        step.state = "FAILED"

    def play(self, cluster, step) -> None:
        self.ran.append(step.name)
        if step.name == self.failing_step:
            output = step.args[step.args.index("--output") + 1]
            bucket, key = output[len("s3://") :].split("/", 1)
            self.s3.put_object(Bucket=bucket, Key=f"{key}/_temporary/0/part-crashed", Body=b"x")
            step.failure_details = failure_details(cluster, step)
            self.failures.append(step.failure_details)
            step.state = "FAILED"
            return
        write_outputs(self.s3, step.name, step.args, self.markers)
        # What EMR counts as the cluster runs (moto leaves 0): the cost facts must read it.
        cluster.normalized_instance_hours += NORMALIZED_HOURS_PER_STEP
        step.state = "COMPLETED"


def time_limit(command: list[str]) -> float | None:
    """Seconds after which `timeout [OPTION]... DURATION COMMAND...` ends COMMAND (GNU
    coreutils; DURATION a number with an optional s/m/h/d suffix); None for another command."""
    if not command or command[0] != "timeout":
        return None
    duration = next(arg for arg in command[1:] if not arg.startswith("-"))
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if duration[-1] in units:
        return float(duration[:-1]) * units[duration[-1]]
    return float(duration)


def failure_details(cluster, step) -> dict[str, str]:
    """What EMR says of a failed step (DescribeStep's Status.FailureDetails): the log file is
    the step's stderr under the cluster's LogUri, and there is none without a LogUri."""
    details = {"Reason": "Unknown Error.", "Message": f"ValueError: {step.name} broke"}
    if cluster.log_uri:
        details["LogFile"] = f"{cluster.log_uri.rstrip('/')}/{cluster.id}/steps/{step.id}/stderr.gz"
    return details


def with_failure_details(status: property) -> property:
    """moto's step status, with the FailureDetails FakeEmr gave a failed step (moto has none)."""

    def status_and_failure(step) -> dict:
        details = getattr(step, "failure_details", None)
        return {**status.fget(step), **({"FailureDetails": details} if details else {})}

    return property(status_and_failure)


def moto_clusters() -> list:
    """Every cluster moto holds (behind an endpoint URL moto files them under us-east-1)."""
    from moto.emr.models import emr_backends

    return [
        cluster
        for regions in list(emr_backends.values())
        for backend in list(regions.values())
        for cluster in list(backend.clusters.values())
    ]


def run_dag(pipeline_dag, s3, failing_step=None, hanging_step=None, logical_date=RUN_DATE):
    from moto.emr.models import Step

    fake_emr = FakeEmr(s3, failing_step, hanging_step)
    fake_emr.start()
    try:
        with mock.patch.object(Step, "status", with_failure_details(Step.status)):
            dag_run = pipeline_dag.test(logical_date=logical_date, run_conf={"platform": "emr"})
    finally:
        fake_emr.stop.set()
        fake_emr.join()
    if fake_emr.error:
        raise fake_emr.error
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}, fake_emr


def clusters(s3_endpoint_url: str, key_id: str = "test", secret: str = "test") -> list[dict]:  # noqa: S107
    """The clusters as the EMR API lists them, through the same endpoint as the DAG."""
    import boto3

    emr = boto3.client(
        "emr",
        endpoint_url=s3_endpoint_url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    return emr.list_clusters()["Clusters"]
