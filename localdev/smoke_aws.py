"""A first real night on your own AWS and Azure accounts: one tiny night on platform emr.

    python -m localdev.smoke_aws --config fruits_config.json     (make smoke-aws CONFIG=...)

`--config` is your `fruits_config` Variable (the lake bucket, region, EMR roles, subnet and the
weights artifact your deployment uses; see README, Configuration). Credentials come from the
standard places and are never printed: AWS from the default chain (AWS_PROFILE, environment,
SSO, an instance role), Azure from AZURE_STORAGE_CONNECTION_STRING.

What it does, with `<id>` unique to this smoke run:
1. lands 10 photos of the bundled sample under `<landing_prefix>/_smoke-<id>/<today>/`; every
   prefix the night writes is moved under `<prefix>/_smoke-<id>/` (inside what the IAM
   policies already grant; Spark skips `_` folders, so a production night never reads them),
   the Azure copy goes to a new container `fruits-smoke-<id>`, and the cluster has one core node;
2. runs `airflow dags test fruits_pipeline` on platform emr in a private AIRFLOW_HOME (the same
   DAG, provider operators and deferrable sensors as a deployment);
3. says what it checked and what the cluster cost (EMR's normalized instance-hours at
   `emr_usd_per_normalized_hour`);
4. always cleans up, also on Ctrl-C or a failure: terminates the run's clusters and waits until
   they have ended (EMR writes their logs until then), deletes every `_smoke-<id>` prefix and
   the container.

AWS_ENDPOINT_URL (botocore's own setting) points every AWS client at another endpoint: the
tests run this same code against moto and Azurite.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3

from localdev.emulators import REPO, airflow_home_env

SAMPLE = REPO / "localdev" / "sample"
DAG_ID = "fruits_pipeline"
# 10 photos: the first 3 Training and 2 Test photos of two classes.
CLASSES, PER_SPLIT = 2, {"Training": 3, "Test": 2}
PHOTOS = CLASSES * sum(PER_SPLIT.values())
SMOKE_FOLDER = "_smoke-{id}"  # under every prefix the night writes


@dataclass
class Smoke:
    """One smoke run: its id, its settings, and what it found."""

    variable: dict
    smoke_id: str = field(
        default_factory=lambda: (
            datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)
        )
    )
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    checks: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def container(self) -> str:
        return f"fruits-smoke-{self.smoke_id}"

    def config(self) -> dict:
        """The user's fruits_config, with the night's every prefix, container and cluster made
        the smoke's own."""
        from fruits.config import PREFIXES

        base = self.run_config(self.variable)
        own = {
            key: f"{getattr(base, key)}/{SMOKE_FOLDER.format(id=self.smoke_id)}" for key in PREFIXES
        }
        return {
            **self.variable,
            **own,
            "azure_container": self.container,
            "emr_core_instance_count": 1,
        }

    @staticmethod
    def run_config(variable: dict):
        from fruits.iam import config_from_variable

        return config_from_variable(variable)


def aws_client(service: str, region: str):
    """From the default credential chain; AWS_ENDPOINT_URL, if set, redirects it (botocore)."""
    return boto3.client(service, region_name=region)


def land_photos(s3, bucket: str, landing: str, run_date: str) -> int:
    labels = sorted(p.name for p in (SAMPLE / "Training").iterdir() if p.is_dir())[:CLASSES]
    landed = 0
    for split, count in PER_SPLIT.items():
        for label in labels:
            for photo in sorted((SAMPLE / split / label).glob("*.jpg"))[:count]:
                key = f"{landing}/{run_date}/{split}/{label}/{photo.name}"
                s3.upload_file(str(photo), bucket, key)
                landed += 1
    return landed


def airflow_env(home: Path, config: dict) -> dict[str, str]:
    """The private Airflow: its own SQLite database, the repository's DAG, the two connections
    from the standard credentials (nothing written to disk)."""
    aws_extra = {"region_name": config["region"]}
    if os.environ.get("AWS_ENDPOINT_URL"):
        aws_extra["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    azure = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if not azure:
        raise SystemExit("AZURE_STORAGE_CONNECTION_STRING is not set: the night publishes to Azure")
    return {
        **os.environ,
        **airflow_home_env(home),
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
        "AIRFLOW_CONN_FRUITS_AWS": json.dumps({"conn_type": "aws", "extra": aws_extra}),
        "AIRFLOW_CONN_FRUITS_WASB": json.dumps(
            {"conn_type": "wasb", "extra": {"connection_string": azure}}
        ),
        "AIRFLOW_VAR_FRUITS_CONFIG": json.dumps(config),
        "FRUITS_DEFAULT_PLATFORM": "emr",
    }


def run_night(env: dict[str, str], run_date: str) -> int:
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, check=False)
    if migrate.returncode != 0:
        sys.stderr.write(migrate.stderr.decode()[-3000:])
        return migrate.returncode
    conf = json.dumps({"platform": "emr"})
    night = [airflow, "dags", "test", DAG_ID, f"{run_date}T02:00:00+00:00", "-c", conf]
    return subprocess.run(night, env=env, check=False).returncode


def run_ids(env: dict[str, str]) -> list[str]:
    """The DAG runs of the private database: this smoke's only."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    listed = subprocess.run(
        [airflow, "dags", "list-runs", DAG_ID, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in listed.stdout.splitlines() if line.startswith("[")]
    return [run["run_id"] for run in json.loads(lines[-1])] if lines else []


def the_clusters(emr, name: str, runs: list[str], since: datetime) -> list[dict]:
    """Every cluster of these DAG runs, in any state (ListClusters, then their tags)."""
    from fruits.emr import RUN_TAG_KEY, run_tag

    tags = {run_tag(run) for run in runs}
    found = []
    for page in emr.get_paginator("list_clusters").paginate(CreatedAfter=since):
        for summary in page["Clusters"]:
            if summary["Name"] != name:
                continue
            cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            if {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}.get(RUN_TAG_KEY) in tags:
                found.append(cluster)
    return found


def check(smoke: Smoke, ok: bool, what: str) -> None:
    smoke.checks.append((ok, what))
    print(f"  [{'ok' if ok else 'FAILED'}] {what}", flush=True)


def verify(smoke: Smoke, rc: int, env: dict[str, str]) -> None:
    """What a real account shows that no emulator does, read back from AWS and Azure."""
    from azure.storage.blob import BlobServiceClient

    from fruits import export
    from fruits.night_facts import emr_cost_estimate, figure_keys

    run = smoke.run_config(smoke.config())
    s3, emr = aws_client("s3", run.region), aws_client("emr", run.region)
    print("\nWhat the smoke night checked:")
    check(smoke, rc == 0, "the night ran on EMR and succeeded (airflow dags test exit 0)")

    keys = figure_keys(run)

    def read(key: str) -> dict:
        return json.loads(s3.get_object(Bucket=run.lake_bucket, Key=key)["Body"].read())

    try:
        counts = read(keys["manifest"])["counts"]
        check(
            smoke,
            counts.get("featurized") == PHOTOS and not counts.get("quarantined"),
            f"featurize decoded and featurized all {PHOTOS} photos on the cluster's Python "
            f"(bootstrap-installed requirements): {counts}",
        )
        report = read(keys["pca_report"])
        check(smoke, report.get("k", 0) >= 1, f"PCA fitted: k={report.get('k')}")
        metrics = read(keys["metrics"])
        check(smoke, "accuracy" in metrics, f"classifier scored: accuracy {metrics['accuracy']}")
    except s3.exceptions.NoSuchKey as missing:
        check(smoke, False, f"an output of the night is missing: {missing}")
    blobs = BlobServiceClient.from_connection_string(_azure())
    latest = blobs.get_blob_client(smoke.container, f"{export.date_prefix(run)}/{export.LATEST}")
    if latest.exists():
        pointer = json.loads(latest.download_blob().readall())
        check(smoke, True, f"published to Azure, verified: {pointer.get('objects')} objects")
    else:
        check(smoke, False, "nothing was published to Azure (no LATEST.json)")
    clusters = the_clusters(emr, f"fruits-{run.run_date}", run_ids(env), smoke.started)
    ended = [c["Status"]["State"] for c in clusters]
    check(smoke, len(clusters) == 1, f"one cluster was made: {[c['Id'] for c in clusters]}")
    check(
        smoke,
        all(state in ("TERMINATING", "TERMINATED") for state in ended),
        f"the teardown terminated it: {ended}",
    )
    for cluster in clusters:
        cost = emr_cost_estimate(emr, cluster["Id"], run.emr.usd_per_normalized_hour)
        print(
            f"\nCost of cluster {cluster['Id']}: {cost['emr_normalized_instance_hours']} "
            f"normalized instance-hours x {run.emr.usd_per_normalized_hour} USD = "
            f"about {cost['emr_cost_estimate_usd']} USD (EMR + EC2 on-demand; S3 requests and "
            "Azure storage are cents)."
        )


def _azure() -> str:
    return os.environ["AZURE_STORAGE_CONNECTION_STRING"]


def clean_up(smoke: Smoke, env: dict[str, str] | None) -> None:
    """Whatever happened: the run's clusters ended, the smoke's prefixes and container gone."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    from fruits.config import PREFIXES

    run = smoke.run_config(smoke.variable)
    s3, emr = aws_client("s3", run.region), aws_client("emr", run.region)
    print("\nCleaning up (this waits until the cluster has ended)...", flush=True)
    if env is not None:
        clusters = the_clusters(emr, f"fruits-{run.run_date}", run_ids(env), smoke.started)
        ids = [c["Id"] for c in clusters]
        if ids:
            emr.terminate_job_flows(JobFlowIds=ids)
            for cluster_id in ids:
                emr.get_waiter("cluster_terminated").wait(
                    ClusterId=cluster_id, WaiterConfig={"Delay": 15, "MaxAttempts": 120}
                )
        print(f"  clusters terminated: {ids or 'none was made'}")
    deleted = 0
    for key in PREFIXES:
        prefix = f"{getattr(run, key)}/{SMOKE_FOLDER.format(id=smoke.smoke_id)}/"
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=run.lake_bucket, Prefix=prefix
        ):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                s3.delete_objects(Bucket=run.lake_bucket, Delete={"Objects": objects})
                deleted += len(objects)
    print(f"  S3 objects deleted under the _smoke-{smoke.smoke_id} prefixes: {deleted}")
    try:
        BlobServiceClient.from_connection_string(_azure()).delete_container(smoke.container)
        print(f"  Azure container {smoke.container} deleted")
    except ResourceNotFoundError:
        print(f"  Azure container {smoke.container}: none was made")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="your fruits_config JSON")
    args = parser.parse_args(argv)
    smoke = Smoke(json.loads(args.config.read_text()))
    run = smoke.run_config(smoke.config())  # a bad config stops here, naming the setting
    home = Path(tempfile.mkdtemp(prefix="fruits-smoke-airflow-"))
    # Ctrl-C must reach us wherever we were started from. A blocked mask and an ignored SIGINT
    # are both inherited through exec, and Python keeps an inherited SIG_IGN instead of raising
    # KeyboardInterrupt (docs.python.org/3/library/signal.html). Seen in a pytest worker that
    # an earlier test's library had left ignoring SIGINT (/proc/<pid>/status SigIgn 0x...2).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # A kill (SIGTERM) cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    env = None
    print(f"Smoke night {smoke.smoke_id}: {PHOTOS} photos, {run.run_date}, one core node.")
    try:
        env = airflow_env(home, smoke.config())
        s3 = aws_client("s3", run.region)
        land_photos(s3, run.lake_bucket, run.landing_prefix, run.run_date)
        rc = run_night(env, run.run_date)
        verify(smoke, rc, env)
    except KeyboardInterrupt:
        print("\nInterrupted.", flush=True)
        smoke.checks.append((False, "interrupted"))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        clean_up(smoke, env)
        shutil.rmtree(home, ignore_errors=True)
    passed = all(ok for ok, _ in smoke.checks) and bool(smoke.checks)
    print("\nSmoke night: " + ("PASSED" if passed else "FAILED"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
