"""`make smoke-aws` (localdev/smoke_aws.py) against moto + Azurite: the same code path as on a
real account, its endpoints redirected by AWS_ENDPOINT_URL (botocore's own setting) and
AZURE_STORAGE_CONNECTION_STRING. FakeEmr plays the cluster in moto's backend (this process).
It says what it checked and what it cost, and leaves nothing behind: after a success and after
a Ctrl-C in the middle of a step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from fake_cloud import SECRET_KEY, SECRET_KEY_ID, FakeEmr, clusters, moto_clusters
from localdev import lake
from localdev.emulators import AZURITE_KEY, REGION, REPO, local_cloud, wait_until

pytestmark = pytest.mark.e2e

PHOTOS = 10
SMOKE_MARKERS = {"_manifest.json": {"counts": {"read": 10, "featurized": 10, "quarantined": 0}}}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, pretrained_weights):
    workdir = tmp_path_factory.mktemp("smoke")
    with local_cloud(workdir, threaded_moto=True) as endpoints:
        reset = urllib.request.Request(f"{endpoints.s3_url}/moto-api/reset", b"", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 (loopback URL)
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        weights_uri, sha256 = lake.upload_weights(s3, pretrained_weights)
        config = workdir / "fruits_config.json"
        config.write_text(json.dumps(lake.fruits_config(weights_uri, sha256)))
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoints.s3_url,
            "AWS_ACCESS_KEY_ID": SECRET_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AZURE_STORAGE_CONNECTION_STRING": endpoints.azurite_connection_string,
            "FRUITS_POLL_INTERVAL_S": "1",
            "FRUITS_STEP_TIMEOUT_S": "120",
            "FRUITS_RETRY_DELAY_S": "1",
            "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
        }
        yield {"endpoints": endpoints, "s3": s3, "config": config, "env": env}


def smoke_command(cloud) -> list[str]:
    return [sys.executable, "-m", "localdev.smoke_aws", "--config", str(cloud["config"])]


def assert_nothing_left(cloud) -> None:
    keys = lake.list_keys(cloud["s3"])
    assert not [key for key in keys if "/_smoke-" in key], keys
    service = BlobServiceClient.from_connection_string(cloud["endpoints"].azurite_connection_string)
    assert [c.name for c in service.list_containers(name_starts_with="fruits-smoke-")] == []
    states = {c["Status"]["State"] for c in clusters(cloud["endpoints"].s3_url)}
    assert states <= {"TERMINATED"}, states


def test_a_smoke_night_checks_says_its_cost_and_cleans_up(cloud):
    fake_emr = FakeEmr(cloud["s3"], markers=SMOKE_MARKERS)
    fake_emr.start()
    try:
        done = subprocess.run(
            smoke_command(cloud),
            env=cloud["env"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        fake_emr.stop.set()
        fake_emr.join()
    said = done.stdout
    assert done.returncode == 0, said[-4000:] + done.stderr[-4000:]
    assert fake_emr.ran == ["featurize", "pca", "classify"]
    assert f"featurized all {PHOTOS} photos" in said
    assert "the teardown terminated it: ['TERMINATED']" in said
    assert "Cost of cluster j-" in said and "USD" in said
    assert "[FAILED]" not in said and said.rstrip().endswith("Smoke night: PASSED")
    for secret in (SECRET_KEY, AZURITE_KEY):
        assert secret not in said + done.stderr
    assert_nothing_left(cloud)


def test_ctrl_c_in_the_middle_of_a_step_still_cleans_up(cloud):
    fake_emr = FakeEmr(cloud["s3"], hanging_step="featurize")
    fake_emr.start()
    try:
        smoke = subprocess.Popen(
            smoke_command(cloud),
            env=cloud["env"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until(
            lambda: any(
                step.state == "RUNNING" and not cluster.state.startswith("TERMINAT")
                for cluster in moto_clusters()
                for step in cluster.steps
            ),
            "the smoke night's featurize step running",
            600,
        )
        time.sleep(2)
        smoke.send_signal(signal.SIGINT)  # what Ctrl-C sends
        said, _ = smoke.communicate(timeout=300)
    finally:
        fake_emr.stop.set()
        fake_emr.join()
    assert smoke.returncode == 1, said[-4000:]
    blocked = [line for line in Path("/proc/self/status").read_text().splitlines() if "Sig" in line]
    assert "Interrupted." in said and "clusters terminated: ['j-" in said, (said[-4000:], blocked)
    assert_nothing_left(cloud)
