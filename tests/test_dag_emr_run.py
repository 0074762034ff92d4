"""The DAG on platform emr, end to end over HTTP: moto (S3 + EMR) and Azurite on loopback.

moto accepts the cluster and the steps but never runs them: a driver thread plays EMR, writing
each step's outputs to S3 and moving the step to COMPLETED (or FAILED), as the cluster would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from dataclasses import replace
from datetime import timedelta

import parliament
import pytest

from fake_cloud import (
    RUN_DATE,
    SECRET_KEY,
    SECRET_KEY_ID,
    blobs,
    clusters,
    container,
    expected_export,
    published,
    recorded_aws_calls,
    run_dag,
    seeded_cloud,
)
from flaky_proxy import FlakyProxy
from fruits import emr, iam
from fruits.spark_steps import SparkJob
from localdev import lake
from localdev.emulators import REGION, free_port

pytestmark = pytest.mark.dag


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, pretrained_weights):
    with seeded_cloud(tmp_path_factory.mktemp("cloud"), pretrained_weights) as endpoints_and_s3:
        yield endpoints_and_s3


def test_a_successful_run_publishes_to_azure_and_terminates_the_cluster(pipeline_dag, cloud):
    endpoints, s3 = cloud
    dag_run, states, fake_emr = run_dag(pipeline_dag, s3)

    assert dag_run.state == "success", states
    assert fake_emr.ran == ["featurize", "pca", "classify"]
    assert {states[f"local.run_{n}_locally"] for n in ("featurize", "pca", "classify")} == {
        "skipped"
    }
    assert states["emr.terminate_emr_cluster"] == "success"
    assert [c["Status"]["State"] for c in clusters(endpoints.s3_url)] == ["TERMINATED"]

    latest, copied = published(endpoints)
    assert copied == expected_export() | {"run/_EXPORT_MANIFEST.json"}
    assert latest["objects"] == len(expected_export())

    # The Assets' events say where this night's outputs are, as fruits_config placed them.
    events = asset_events(dag_run.run_id)
    night = RUN_DATE.date().isoformat()
    assert events["fruits_features_s3"]["features"] == (
        f"s3://{lake.LAKE_BUCKET}/features/ingest_date={night}/"
    )
    assert events["fruits_features_s3"]["vectors"] == (
        f"s3://{lake.LAKE_BUCKET}/vectors/ingest_date={night}/"
    )
    assert events["fruits_features_s3"]["run"] == f"s3://{lake.LAKE_BUCKET}/runs/{night}/"
    azure = events["fruits_features_azure"]
    assert (azure["container"], azure["prefix"]) == (lake.CONTAINER, latest["prefix"])
    # ...and the night's figures, from the jobs' own manifest, report and metrics.
    for extra in events.values():
        assert {
            k: extra[k] for k in ("photos_new", "photos_quarantined", "training_rows_fitted")
        } == {"photos_new": 3, "photos_quarantined": 1, "training_rows_fitted": 4}
        assert (extra["pca_k"], extra["explained_variance"], extra["accuracy"]) == (7, 0.951, 0.75)
        assert (extra["accuracy_prequential"], extra["classes_new"]) == (0.5, 1)  # night report
        assert (extra["mean_shift_max_class"], extra["mean_shift_max"]) == ("apple", 0.4)
        assert extra["platform"] == "emr" and extra["duration_s"] >= 0
        cluster = emr_cluster(endpoints, extra["emr_cluster_id"])
        assert cluster["NormalizedInstanceHours"] == 24  # as EMR counts them: 8 a step here
        assert extra["emr_normalized_instance_hours"] == 24
        assert extra["emr_cost_estimate_usd"] == 0.79  # 24 h at the default $0.0328 an hour


def emr_cluster(endpoints, cluster_id: str) -> dict:
    import boto3

    emr = boto3.client(
        "emr",
        endpoint_url=endpoints.s3_url,
        region_name=REGION,
        aws_access_key_id=SECRET_KEY_ID,
        aws_secret_access_key=SECRET_KEY,
    )
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]


def asset_events(run_id: str) -> dict[str, dict]:
    """The extra of each Asset event the run emitted, by Asset name, from Airflow's database."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id))
        return {event.asset.name: event.extra for event in events}


def test_a_night_without_photos_succeeds_and_starts_or_publishes_nothing(pipeline_dag, cloud):
    endpoints, s3 = cloud
    before_clusters, before_blobs = len(clusters(endpoints.s3_url)), blobs(endpoints)
    empty_night = RUN_DATE + timedelta(days=1)  # nothing landed under landing/2026-11-26/
    s3.put_object(Bucket=lake.LAKE_BUCKET, Key="landing/2026-11-26/notes.txt", Body=b"no photo")
    dag_run, states, fake_emr = run_dag(pipeline_dag, s3, logical_date=empty_night)

    assert dag_run.state == "success", states
    assert states["find_new_photos"] == "success"
    assert {state for task, state in states.items() if task not in FIRST} == {"skipped"}
    assert len(clusters(endpoints.s3_url)) == before_clusters and fake_emr.ran == []
    assert blobs(endpoints) == before_blobs  # nothing published, no LATEST.json for the date


FIRST = ("wait_for_earlier_nights", "resolve_config", "find_new_photos")


def new_clusters(endpoints, before: set[str]) -> list[str]:
    return [c["Status"]["State"] for c in clusters(endpoints.s3_url) if c["Id"] not in before]


@pytest.mark.parametrize(
    ("failing", "next_step"), [("featurize", "pca"), ("pca", "classify"), ("classify", None)]
)
def test_a_failing_step_fails_the_run_and_still_terminates_the_cluster(
    pipeline_dag, cloud, capfd, caplog, failing, next_step
):
    endpoints, s3 = cloud
    before = {c["Id"] for c in clusters(endpoints.s3_url)}
    capfd.readouterr()
    dag_run, states, fake_emr = run_dag(pipeline_dag, s3, failing_step=failing)
    task_log = "".join(capfd.readouterr())

    assert dag_run.state == "failed", states
    assert states[f"emr.watch_{failing}_step"] == "failed"
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries[f"emr.watch_{failing}_step"] == 1  # a failed step is final: not retried
    if next_step:
        assert states[f"emr.add_{next_step}_step"] == "upstream_failed"
        assert next_step not in fake_emr.ran
    assert states["publish.copy_to_azure"] == "upstream_failed"
    assert states["emr.terminate_emr_cluster"] == "success"
    assert new_clusters(endpoints, before) == ["TERMINATED"]
    # EMR's reason and the step's log file in the task log; the file under the README's
    # `s3://<lake>/emr-logs/` (EMR names one only for a cluster given a LogUri).
    (failure,) = fake_emr.failures
    assert failure.get("LogFile", "").startswith(f"s3://{lake.LAKE_BUCKET}/emr-logs/j-"), failure
    assert failure["Reason"] in task_log and failure["LogFile"] in task_log
    # The failure callback names the task and its log.
    said = caplog.text
    assert f"task emr.watch_{failing}_step failed after 1 tries" in said
    assert f"/tasks/emr.watch_{failing}_step?try_number=1" in said


def test_a_sensor_timeout_fails_the_run_and_still_terminates_the_cluster(
    pipeline_dag, cloud, monkeypatch
):
    """The featurize step never ends: its sensor gives up after its attempts, the run fails."""
    endpoints, s3 = cloud
    sensor = pipeline_dag.get_task("emr.watch_featurize_step")
    monkeypatch.setattr(sensor, "max_attempts", 3)
    monkeypatch.setattr(sensor, "timeout", 3)
    before = {c["Id"] for c in clusters(endpoints.s3_url)}
    dag_run, states, fake_emr = run_dag(pipeline_dag, s3, hanging_step="featurize")

    assert dag_run.state == "failed", states
    assert states["emr.watch_featurize_step"] == "failed"
    assert states["emr.add_pca_step"] == "upstream_failed"
    assert states["emr.terminate_emr_cluster"] == "success"
    assert new_clusters(endpoints, before) == ["TERMINATED"]
    assert fake_emr.ran == []


def test_a_rendered_step_ends_its_hung_command_itself(tmp_path):
    """EMR has no step timeout (AddJobFlowSteps' StepConfig: Name, ActionOnFailure,
    HadoopJarStep) and auto-termination waits for an idle cluster, which a running step never
    is (EMR Management Guide, "Using an auto-termination policy"). command-runner.jar runs the
    step's Args as a command ("Run commands and scripts on an Amazon EMR cluster"); a non-zero
    exit fails the step. Here the rendered Args run as that command, with coreutils' real
    `timeout` and a spark-submit that hangs: it is ended, with timeout's status 124."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    hung = fake_bin / "spark-submit"
    hung.write_text("#!/bin/sh\nexec sleep 600\n")
    hung.chmod(0o755)
    job = SparkJob("featurize", {"--input": "s3://b/in"}, {"--output": "s3://b/out"})
    command = emr.step(job, "s3://b/code/abc", timeout_s=1)["HadoopJarStep"]["Args"]
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    started = time.monotonic()
    ended = subprocess.run(command, env=env, timeout=30, check=False, capture_output=True)
    assert ended.returncode == 124, ended
    assert time.monotonic() - started < 10


def test_a_hung_step_ends_itself_fails_the_run_and_the_cluster_is_terminated(
    pipeline_dag, cloud, monkeypatch
):
    """A step that hangs is ended on the cluster by its own timeout (FakeEmr plays coreutils
    `timeout` as the test above shows it), well before its watcher would give up: the watcher
    fails at once (a failed step is final), and the teardown terminates the cluster."""
    endpoints, s3 = cloud
    render_steps = pipeline_dag.get_task("emr.emr_steps").python_callable.__globals__
    deployment = render_steps["DEPLOYMENT"]
    monkeypatch.setitem(render_steps, "DEPLOYMENT", replace(deployment, step_timeout_s=3))
    watcher = pipeline_dag.get_task("emr.watch_featurize_step")
    monkeypatch.setattr(watcher, "max_attempts", 60)  # polls every second: 60 s
    monkeypatch.setattr(watcher, "timeout", 60)
    before = {c["Id"] for c in clusters(endpoints.s3_url)}
    dag_run, states, fake_emr = run_dag(pipeline_dag, s3, hanging_step="featurize")

    assert dag_run.state == "failed", states
    assert states["emr.watch_featurize_step"] == "failed"
    assert dag_run.get_task_instance("emr.watch_featurize_step").try_number == 1  # final
    (failure,) = fake_emr.failures
    assert failure["Message"] == "Command exited with status 124"  # ended by its own timeout
    assert states["emr.add_pca_step"] == "upstream_failed"
    assert states["emr.terminate_emr_cluster"] == "success"
    assert new_clusters(endpoints, before) == ["TERMINATED"]


def test_a_failing_copy_to_azure_fails_the_run_and_keeps_the_published_copy(
    pipeline_dag, cloud, monkeypatch
):
    endpoints, s3 = cloud
    dag_run, states, _ = run_dag(pipeline_dag, s3)
    assert dag_run.state == "success", states
    latest_before, _ = published(endpoints)

    dead_endpoint = f"http://127.0.0.1:{free_port()}/devstoreaccount1"  # nothing listens there
    broken = endpoints.azurite_connection_string.replace(endpoints.blob_url, dead_endpoint)
    # Azure gone for good: no point in the SDK's or Airflow's retries, each would fail the same.
    extra = {"connection_string": broken, "retry_total": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_FRUITS_WASB", json.dumps({"conn_type": "wasb", "extra": extra})
    )
    monkeypatch.setattr(pipeline_dag.get_task("publish.copy_to_azure"), "retries", 0)
    before = {c["Id"] for c in clusters(endpoints.s3_url)}
    dag_run, states, _ = run_dag(pipeline_dag, s3)

    assert dag_run.state == "failed", states
    assert states["publish.copy_to_azure"] == "failed"
    assert states["publish.verify_and_publish"] == "upstream_failed"
    assert states["emr.terminate_emr_cluster"] == "success"
    assert new_clusters(endpoints, before) == ["TERMINATED"]
    assert published(endpoints)[0] == latest_before  # readers still see the last verified copy


def test_transient_s3_errors_are_retried(pipeline_dag, cloud, monkeypatch):
    """503 SlowDown over the wire: botocore's retries absorb a short burst inside a task; when
    every attempt of a try fails, Airflow's task retry takes over. The run succeeds either way."""
    endpoints, s3 = cloud
    with FlakyProxy(endpoints.s3_url) as proxy:
        aws = json.loads(os.environ["AIRFLOW_CONN_FRUITS_AWS"])
        aws["extra"]["endpoint_url"] = proxy.url
        aws["extra"]["config_kwargs"] = {"retries": {"mode": "standard", "total_max_attempts": 3}}
        monkeypatch.setenv("AIRFLOW_CONN_FRUITS_AWS", json.dumps(aws))
        proxy.fail("GET", f"/{lake.LAKE_BUCKET}/runs/2026-11-25/", times=2)  # < 3 attempts
        proxy.fail("GET", f"/{lake.LAKE_BUCKET}/models/", times=3)  # = 3 attempts: one try
        dag_run, states, _ = run_dag(pipeline_dag, s3)

    assert dag_run.state == "success", states
    assert len(proxy.injected) == 5, proxy.injected
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries["setup.check_weights"] == 2  # its first try met three 503s in a row
    assert tries["publish.copy_to_azure"] == 1  # two 503s, retried by botocore within the try
    latest, copied = published(endpoints)
    assert copied == expected_export() | {"run/_EXPORT_MANIFEST.json"}


NIGHT_PREFIXES = (  # what the night of 2026-11-25 writes in the lake
    "features/ingest_date=2026-11-25/",
    "quarantine/ingest_date=2026-11-25/",
    "vectors/ingest_date=2026-11-25/",
    "runs/2026-11-25/",
)


def run_outputs(s3) -> dict[str, bytes]:
    return {
        item["Key"]: s3.get_object(Bucket=lake.LAKE_BUCKET, Key=item["Key"])["Body"].read()
        for prefix in NIGHT_PREFIXES
        for item in s3.list_objects_v2(Bucket=lake.LAKE_BUCKET, Prefix=prefix).get("Contents", [])
    }


# AWS's Service Authorization Reference: the permission an S3 operation needs, where it is not
# the operation's own name (any other operation needs `<service>:<operation>`).
S3_PERMISSIONS = {
    "HeadObject": ["GetObject"],
    "HeadBucket": ["ListBucket"],
    "ListObjects": ["ListBucket"],
    "ListObjectsV2": ["ListBucket"],
    "DeleteObjects": ["DeleteObject"],
    "CopyObject": ["GetObject", "PutObject"],
    "CreateMultipartUpload": ["PutObject"],
    "UploadPart": ["PutObject"],
    "CompleteMultipartUpload": ["PutObject"],
}
IAM_ACTIONS = {s["prefix"]: s["privileges"] for s in parliament.iam_definition}  # AWS's tables


def actions_needed(calls: list[tuple[str, str]]) -> set[str]:
    """The IAM actions that authorize these calls, with the actions AWS lists as their
    dependent actions (RunJobFlow's iam:PassRole for the cluster's roles)."""
    needed = {
        f"{service}:{name}"
        for service, operation in calls
        for name in (S3_PERMISSIONS.get(operation, [operation]) if service == "s3" else [operation])
    }
    privileges = {
        f"{service}:{p['privilege']}": p for service, ps in IAM_ACTIONS.items() for p in ps
    }
    unknown = needed - set(privileges)  # an operation whose permission is named otherwise
    assert not unknown, f"no such IAM action (add the operation to S3_PERMISSIONS): {unknown}"
    return needed | {
        dependent
        for action in needed
        for resource in privileges[action]["resource_types"]
        for dependent in resource["dependent_actions"]
    }


def test_rerunning_a_date_after_a_failure_gives_exactly_a_clean_runs_outputs(pipeline_dag, cloud):
    """Also the Airflow role's test against what the DAG calls: these runs make every kind of
    AWS call (the first uploads the code bundle, the re-run deletes the failed run's debris)."""
    endpoints, s3 = cloud
    for item in s3.list_objects_v2(Bucket=lake.LAKE_BUCKET, Prefix="code/").get("Contents", []):
        s3.delete_object(Bucket=lake.LAKE_BUCKET, Key=item["Key"])
    with recorded_aws_calls(SECRET_KEY_ID) as calls:  # the DAG's connection, not the test's
        dag_run, states, _ = run_dag(pipeline_dag, s3)
        assert dag_run.state == "success", states
        clean = run_outputs(s3)
        _, clean_export = published(endpoints)

        dag_run, _, _ = run_dag(pipeline_dag, s3, failing_step="pca")  # leaves pca/_temporary/
        assert dag_run.state == "failed"
        assert any("/_temporary/" in key for key in run_outputs(s3))
        dag_run, states, _ = run_dag(pipeline_dag, s3)
        assert dag_run.state == "success", states
    assert run_outputs(s3) == clean  # same objects, same bytes: no leftovers, no duplicates

    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_FRUITS_CONFIG"]),
        "aws_account_id": "123456789012",
    }
    policy = iam.render("airflow-role", iam.config_from_variable(variable))
    granted = {a for statement in policy["Statement"] for a in iam.as_list(statement["Action"])}
    needed = actions_needed(calls)
    assert not needed - granted, f"called, not granted: {sorted(needed - granted)}"
    assert not granted - needed, f"granted, never called: {sorted(granted - needed)}"
    latest, export = published(endpoints)
    assert export == clean_export
    # One copy of the date in Azure: each table's partition holds only the latest attempt, and
    # no staging is left; + its export manifest and LATEST.json.
    dated = [name for name in blobs(endpoints) if "2026-11-25" in name]
    assert len(dated) == len(clean) + 2, dated
    assert all(f"/attempt={latest['attempt']}/" in n or n.endswith("/LATEST.json") for n in dated)


def test_the_copy_is_verified_blob_by_blob(cloud):
    """Alter, truncate or delete one exported blob: the verification names it."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from fruits import export

    endpoints, s3 = cloud
    s3_hook, wasb = S3Hook(aws_conn_id="fruits_aws"), WasbHook(wasb_conn_id="fruits_wasb")
    target = export_target("2026-11-30", "attempt1")
    sources = export_sources("2026-11-30")
    objects = {
        "features/ingest_date=2026-11-30/part-0.parquet": ("features/part-0.parquet", b"PAR1"),
        "runs/2026-11-30/pca/report.json": ("run/pca/report.json", b"{}" * 50),
        "runs/2026-11-30/classify/metrics.json": ("run/classify/metrics.json", b"{}"),
    }

    def stage() -> None:  # what copy_to_azure leaves in the staging folder
        for key, (blob, body) in objects.items():
            s3.put_object(Bucket=lake.LAKE_BUCKET, Key=key, Body=body)
            wasb.load_string(
                body.decode(),
                lake.CONTAINER,
                f"{target.blob_prefix}/{blob}",
                create_container=True,
                overwrite=True,
            )

    verify = lambda: export.verify_and_publish(  # noqa: E731
        s3_hook, wasb, sources, target, "attempt1"
    )
    stage()
    assert verify()["objects"] == 3
    run_folder = target.destination(sources.prefixes["run"])
    manifest = json.loads(wasb.read_file(lake.CONTAINER, f"{run_folder}/{export.EXPORT_MANIFEST}"))
    assert {name: o["sha256"] for name, o in manifest["objects"].items()} == {
        blob: hashlib.sha256(body).hexdigest() for blob, body in objects.values()
    }
    stage()  # a published attempt leaves no staging: stage it again to alter it

    # Same size, other bytes: only the checksums of the bytes tell them apart.
    report = objects["runs/2026-11-30/pca/report.json"][1]
    corrupted = report.replace(b"{", b"[").replace(b"}", b"]")
    staged_report = f"{target.blob_prefix}/run/pca/report.json"
    wasb.load_string(corrupted.decode(), lake.CONTAINER, staged_report, overwrite=True)
    sha = [hashlib.sha256(body).hexdigest() for body in (report, corrupted)]
    with pytest.raises(export.ExportMismatch) as mismatch:
        verify()
    assert (
        f"content differs: run/pca/report.json (SHA-256 in S3 {sha[0]}, in Azure {sha[1]})"
        in str(mismatch.value)
    )
    wasb.load_string("{}", lake.CONTAINER, staged_report, overwrite=True)
    with pytest.raises(export.ExportMismatch, match="size differs: run/pca/report.json"):
        verify()
    wasb.delete_file(lake.CONTAINER, f"{target.blob_prefix}/run/classify/metrics.json")
    with pytest.raises(export.ExportMismatch, match="missing in Azure: run/classify/metrics.json"):
        verify()


def export_sources(night: str):
    from fruits import export

    return export.ExportSources(
        lake.LAKE_BUCKET,
        {
            "features": f"features/ingest_date={night}",
            "vectors": f"vectors/ingest_date={night}",
            "run": f"runs/{night}",
        },
    )


def export_target(night: str, attempt: str):
    from fruits import export

    return export.ExportTarget(lake.CONTAINER, "fruits", night, f"fruits/runs/{night}", attempt)


def table_as_spark_reads_it(endpoints, table: str) -> dict[tuple[str, str], list[str]]:
    """The files a reader of `fruits/<table>/` as one table reads, by (ingest_date, attempt):
    every blob under the root except those with a path component Spark skips, as Spark's
    file listing does (apache/spark, HadoopFSUtils.shouldFilterOutPathName: a name starting with
    `_` without `=`, or with `.`). Synapse serverless skips `_` and `.` names as well."""
    root = f"fruits/{table}/"
    partitions: dict[tuple[str, str], list[str]] = {}
    for name in sorted(blobs(endpoints)):
        if not name.startswith(root):
            continue
        parts = name[len(root) :].split("/")
        if any((p.startswith("_") and "=" not in p) or p.startswith(".") for p in parts):
            continue
        values = dict(p.split("=", 1) for p in parts[:-1])
        partitions.setdefault((values["ingest_date"], values["attempt"]), []).append(parts[-1])
    return partitions


def test_a_rerun_of_a_date_never_shows_a_table_reader_two_copies_of_it(cloud):
    """The first export of a night, a re-run whose copy fails halfway (one object staged of
    three), then a re-run that succeeds: a reader of each table sees the first attempt, still
    only it, then only the last; LATEST.json follows; nothing of the failed try stays."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from fruits import export

    endpoints, s3 = cloud
    s3_hook, wasb = S3Hook(aws_conn_id="fruits_aws"), WasbHook(wasb_conn_id="fruits_wasb")
    night, sources = "2026-11-29", export_sources("2026-11-29")

    def night_outputs(version: bytes) -> dict[str, bytes]:
        outputs = {
            "features/part-0.parquet": b"PAR1 features " + version,
            "vectors/part-0.parquet": b"PAR1 vectors " + version,
            "run/pca/report.json": b'{"v": "%s"}' % version,
        }
        for name, body in outputs.items():
            folder, relative = name.split("/", 1)
            key = f"{sources.prefixes[folder]}/{relative}"
            s3.put_object(Bucket=lake.LAKE_BUCKET, Key=key, Body=body)
        return outputs

    def stage(target, outputs: dict[str, bytes]) -> None:  # what copy_to_azure does
        for name, body in outputs.items():
            blob = f"{target.blob_prefix}/{name}"
            wasb.load_string(
                body.decode(), lake.CONTAINER, blob, overwrite=True, create_container=True
            )

    def readers_view() -> dict[str, dict]:  # the night's rows (the cloud holds other nights)
        return {
            t: {
                key: files
                for key, files in table_as_spark_reads_it(endpoints, t).items()
                if key[0] == night
            }
            for t in ("features", "vectors")
        }

    first = export_target(night, "run1")
    stage(first, night_outputs(b"1"))
    export.verify_and_publish(s3_hook, wasb, sources, first, "run1")
    one_attempt = {t: {(night, "run1"): ["part-0.parquet"]} for t in ("features", "vectors")}
    assert readers_view() == one_attempt

    failed = export_target(night, "run2")
    outputs = night_outputs(b"2")
    stage(failed, dict(list(outputs.items())[:1]))  # the copy died after one object
    with pytest.raises(export.ExportMismatch, match="missing in Azure: run/pca/report.json"):
        export.verify_and_publish(s3_hook, wasb, sources, failed, "run2")
    assert readers_view() == one_attempt  # the failed try is invisible
    latest, _ = published(endpoints, night)
    assert latest["attempt"] == "run1"

    last = export_target(night, "run3")
    stage(last, outputs)
    export.verify_and_publish(s3_hook, wasb, sources, last, "run3")
    assert readers_view() == {t: {(night, "run3"): ["part-0.parquet"]} for t in one_attempt}
    latest, names = published(endpoints, night)
    assert latest["attempt"] == "run3"
    assert names == {*outputs, "run/_EXPORT_MANIFEST.json"}
    body = container(endpoints).download_blob(
        f"fruits/vectors/ingest_date={night}/attempt=run3/part-0.parquet"
    )
    assert body.readall() == outputs["vectors/part-0.parquet"]
    left = [n for n in blobs(endpoints) if night in n]
    assert not [n for n in left if "/_staging/" in n or "attempt=run1" in n], left


def test_no_credential_is_written_anywhere(pipeline_dag, cloud, caplog, capfd, airflow_db):
    """Logs, rendered templates and XComs (the metadata DB), S3 outputs and blobs: no secret."""
    endpoints, s3 = cloud
    capfd.readouterr()  # what earlier tests printed is not this run's log
    with caplog.at_level("DEBUG"):
        dag_run, states, _ = run_dag(pipeline_dag, s3)
    assert dag_run.state == "success", states

    # Task logs go through structlog to the process's output, not to logging's handlers: each
    # kind of operator that ran must have its lines there, or a leak in them would go unseen.
    captured = capfd.readouterr()
    task_log = captured.out + captured.err
    ran = {  # a mapped task's operator is its operator_class
        getattr(t, "operator_class", type(t))
        for t in pipeline_dag.tasks
        if states[t.task_id] == "success"
    }
    silent = [
        k for k in ran if f"[airflow.task.operators.{k.__module__}.{k.__name__}]" not in task_log
    ]
    assert not silent, f"no task log line captured from {silent}"

    # botocore's DEBUG lines show the (public) access key id in the request's signature header;
    # task logs run at INFO. The secret key must appear nowhere, not even at DEBUG.
    written = [r.getMessage().encode() for r in caplog.records if r.levelno >= logging.INFO]
    written.append(task_log.encode())
    written += [p.read_bytes() for p in airflow_db.rglob("*") if p.is_file()]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake.LAKE_BUCKET):
        for item in page.get("Contents", []):
            written.append(s3.get_object(Bucket=lake.LAKE_BUCKET, Key=item["Key"])["Body"].read())
    exported = container(endpoints)
    written += [exported.download_blob(b.name).readall() for b in exported.list_blobs()]
    assert len(written) > 20
    for secret in (SECRET_KEY_ID, SECRET_KEY):
        assert not [blob for blob in written if secret.encode() in blob], f"{secret} leaked"
    assert SECRET_KEY not in caplog.text
