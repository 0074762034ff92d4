"""The local stand-ins for the cloud, on free loopback ports, always stopped afterwards.

- S3 and EMR: a moto server (`python -m moto.server`, a separate process; or moto's threaded
  server when a test must reach moto's backend to move EMR steps along);
- Azure Blob Storage: Azurite, from the npm package installed by `make`;
- the Airflow connections and Variable that point the DAG at them, as environment variables.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account: a fixed, public test key, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
REGION = "eu-west-1"


def airflow_database(home: Path) -> Path:
    """The SQLite metadata database of the private Airflow in `home`."""
    return home / "airflow.db"


def airflow_home_env(home: Path) -> dict[str, str]:
    """A private Airflow: its own SQLite database, this repository's dags/ and plugins/."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # SQLite has one writer; sqlite3 waits 5 s for it by default. Under load a scheduler
        # loop can hold it longer, and "database is locked" then fails a request or kills the
        # scheduler. Production runs Postgres.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_database(home)}?timeout=60",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not start within {timeout:.0f} s")


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL we built)
            return True
    except OSError as error:
        return hasattr(error, "code")  # any HTTP status means the server is up


@dataclass(frozen=True)
class Endpoints:
    s3_url: str  # http://127.0.0.1:PORT (moto: S3, EMR, IAM, STS)
    blob_url: str  # http://127.0.0.1:PORT/devstoreaccount1 (Azurite)

    @property
    def azurite_connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_url};"
        )

    def airflow_env(
        self, aws_conn_id: str = "fruits_aws", wasb_conn_id: str = "fruits_wasb"
    ) -> dict:
        """AIRFLOW_CONN_* variables for the two connections (moto accepts any key pair)."""
        aws = {
            "conn_type": "aws",
            "login": "test",
            "password": "test",  # noqa: S105 (moto's placeholder credentials)
            "extra": {"region_name": REGION, "endpoint_url": self.s3_url},
        }
        wasb = {"conn_type": "wasb", "extra": {"connection_string": self.azurite_connection_string}}
        return {
            f"AIRFLOW_CONN_{aws_conn_id.upper()}": json.dumps(aws),
            f"AIRFLOW_CONN_{wasb_conn_id.upper()}": json.dumps(wasb),
        }


@contextmanager
def moto_server(threaded: bool = False) -> Iterator[str]:
    """A moto server on 127.0.0.1; yields its URL. `threaded` runs it in this process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if threaded:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            wait_until(lambda: _answers_http(f"{url}/moto-api/"), "moto")
            yield url
        finally:
            server.stop()
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers_http(f"{url}/moto-api/"), "moto server")
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    """Azurite's Blob service on 127.0.0.1 storing under workdir; yields the account URL."""
    if not AZURITE.exists():
        raise FileNotFoundError(f"{AZURITE} is missing: run `make venv` (it runs npm ci)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
        + ["--location", str(workdir), "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers_http(f"http://127.0.0.1:{port}/"), "Azurite")
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        stop(process)


@contextmanager
def local_cloud(workdir: Path, threaded_moto: bool = False) -> Iterator[Endpoints]:
    with moto_server(threaded=threaded_moto) as s3_url, azurite(workdir / "azurite") as blob_url:
        yield Endpoints(s3_url=s3_url, blob_url=blob_url)
