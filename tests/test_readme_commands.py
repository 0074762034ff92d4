"""Every command README.md and the pages under docs/ show is accounted for, so the docs cannot
drift from the code.

Each command (a line of a ```bash block, a `$ ` line, an inline `make …`, `airflow …`...) must
match one rule below: run here as written (those that run offline in seconds or so; Airflow
commands in the suite's private Airflow, `aws iam` against moto), its flags parsed by the real
parser, run by another test of the suite (named), or needing what CI has not: an AWS or Azure
account, Docker, internet beyond PyPI (said why). A command added to a page that matches no rule
fails the first test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOCS = "\n".join(page.read_text() for page in PAGES)
COMMAND_WORDS = (
    "make",
    "airflow",
    "aws",
    "az ",
    "docker",
    "npm",
    "spark-submit",
    "PYTHONPATH=",
    "python",
)
VENV = (".venv/bin/python", ".venv/bin/pytest")


def readme_commands(text: str = DOCS) -> list[str]:
    """The pages' commands, one per line, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"^\$ (.+)$", text, re.M)  # a shown session: `$ command`
    commands = [" ".join(line.split("  #")[0].split()) for line in lines]
    for span in re.findall(r"`([^`\n]+)`", text):  # inline commands of two words or more
        if len(span.split()) > 1 and span.split()[0].startswith(COMMAND_WORDS + VENV):
            commands.append(span)
    return sorted({c for c in commands if c and not c.startswith("#")})


# Commands that other tests run, or that need what CI has not (a cloud account, Docker).
ELSEWHERE = {
    r"make test": "the suite itself: .ci/run runs `make test` (checked below)",
    r"\.venv/bin/pytest tests/test_airflow_services\.py": "in the suite (make test)",
    r"airflow standalone": "tests/test_airflow_services.py",
    r"airflow dags trigger.*": "tests/test_airflow_services.py (CLI trigger)",
    r"airflow backfill create": "tests/test_airflow_services.py (backfill)",
    r"airflow dags test.*": "tests/test_local_pipeline_e2e.py (localdev.run_pipeline runs it)",
    r"aws (?!iam ).*": "needs an AWS account",
    r"az .*": "needs an Azure subscription",
    r"pip install -r requirements\.txt --constraint https://raw\.githubusercontent\.com/"
    r"apache/airflow/constraints-3\.3\.2/constraints-3\.11\.txt": "needs GitHub (Airflow's "
    "constraints file); test_the_airflow_side_is_airflow_only checks what it installs",
    r"curl -fLO https://storage\.googleapis\.com/tensorflow/keras-applications/.*": "needs "
    "internet beyond PyPI (Keras' weights); check_weights' tests pin a file by its sha256",
    r"sha256sum mobilenet_v2_weights_\S+\.h5": "the file the line above downloads",
    r"\.venv/bin/python -m pytest .*": "part of the suite: make test runs all of it",
    r"docker compose up": "no Docker engine in CI; tests/test_docker_compose.py checks the file",
    r"npm ci": "make's venv target runs it on every fresh clone",
    r"make featurize": "test_make_featurize_runs_as_written runs the README's whole line",
    r"make bench-latency": "needs /dev/fuse and fuse3; tests/test_slow_fs.py checks the mount",
    r"make grid-screenshot": "needs Chromium and playwright, not in CI; test_dag_structure.py "
    "pins the shape the picture shows",
    r"spark-submit --deploy-mode client .*": "the EMR step; tests/test_dag_emr_*.py check steps",
    r"make smoke-aws( CONFIG=\S+)?": "needs AWS and Azure accounts; tests/test_smoke_aws.py runs "
    "localdev.smoke_aws against moto and Azurite",
    r"make test-(unit|dag|spark|e2e|services)": "one tier of the suite: make test runs them all",
    r"\.venv/bin/python -c \"import numpy as np, pyarrow\.parquet as pq; .*": "needs a night's "
    "basis.npz and features partition; test_project_puts_a_range_of_nights_in_one_nights_basis "
    "checks the same formula",
    r"spark-submit --py-files s3://\S+ s3://\S+/project\.py .*": "an EMR step (needs an "
    "account); test_project_puts_a_range_of_nights_in_one_nights_basis runs project.py",
    r"make lock( ARGS=--upgrade)?": "re-resolves the lock from PyPI; "
    "tests/test_cluster_requirements.py checks the committed lock",
    r"make wheelhouse( BUCKET=\S+ CODE_PREFIX=\S+)?": "needs an AWS account (uploads ~424 MB); "
    "tests/test_cluster_requirements.py checks the lock and what the bootstrap installs",
}
RUN_HERE = {
    r"make run": "test_make_run_is_the_local_main_job",
    r"(\$ )?make run ARGS=.*": "test_make_run_flags_parse",
    r"PYTHONPATH=plugins \.venv/bin/python -m localdev\.policies .*": "test_iam_commands_render",
    r"\.venv/bin/python -m benchmarks\.\w+.*": "test_benchmark_commands_start",
    r"make featurize .*": "test_make_featurize_runs_as_written",
    r"PYTHONPATH=plugins \.venv/bin/python -m fruits\.local_platform": "test_local_options_print",
    r"spark-submit spark_jobs/featurize\.py .*": "test_featurize_synopsis_flags_parse",
    r"aws iam .*": "test_the_aws_iam_commands_run_against_moto",
    r"airflow connections add .*": "test_the_connection_and_variable_commands",
    r"airflow variables set fruits_config .*": "test_the_connection_and_variable_commands",
    r"airflow dags list(-import-errors)?": "test_the_dag_list_commands",
}


def rule_of(command: str) -> str | None:
    for pattern, where in {**ELSEWHERE, **RUN_HERE}.items():
        if re.fullmatch(pattern, command):
            return where
    return None


def matching(pattern: str) -> list[str]:
    return [c for c in readme_commands() if re.fullmatch(pattern, c)]


def test_every_readme_command_is_accounted_for():
    commands = readme_commands()
    assert len(commands) > 15, commands  # the extraction itself works
    unaccounted = [c for c in commands if rule_of(c) is None]
    assert not unaccounted, f"commands in the docs no test runs or explains: {unaccounted}"
    for pattern in RUN_HERE:  # a rule whose command left the README is dead: remove it
        assert matching(pattern), f"no README command matches {pattern!r}"


def dry_run(target: str) -> str:
    """What `make <target>` would run, without running it."""
    return subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_make_run_is_the_local_main_job():
    # test_local_pipeline_e2e.py runs localdev.run_pipeline.main; this pins the target to it.
    assert "-m localdev.run_pipeline" in dry_run("run")
    assert (REPO / ".ci" / "run").read_text().strip().endswith("exec make test")
    assert "-m pytest" in dry_run("test")


def test_make_run_flags_parse():
    from localdev import run_pipeline

    for command in matching(r"(\$ )?make run ARGS=.*"):
        for args in re.findall(r'ARGS="([^"]*)"', command):
            if args == "--help":  # prints every flag and exits 0
                with pytest.raises(SystemExit) as printed:
                    run_pipeline.parse_args(["--help"])
                assert printed.value.code == 0
                continue
            run_pipeline.parse_args(shlex.split(args))  # SystemExit on an unknown flag


def in_scratch_folder(tmp_path: Path) -> Path:
    """A folder where README commands with relative paths run without writing into the repo."""
    for name in (
        ".venv",
        "plugins",
        "localdev",
        "spark_jobs",
        "benchmarks",
        "Makefile",
        "requirements-dev.txt",
    ):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def test_iam_commands_render(tmp_path):
    # Run as written, on the example config the kept policies in iam/ are rendered from.
    folder = in_scratch_folder(tmp_path)
    shutil.copy(REPO / "iam" / "example-fruits_config.json", folder / "fruits_config.json")
    commands = matching(r"PYTHONPATH=plugins \.venv/bin/python -m localdev\.policies .*")
    assert len(commands) == 5, commands  # three policies, two trust policies
    for command in commands:
        subprocess.run(command, shell=True, cwd=folder, check=True, env=without_pythonpath())  # noqa: S602 (as a shell runs it)
        written = command.split("> ")[1]
        assert json.loads((folder / written).read_text()) == json.loads(
            (REPO / "iam" / written).read_text()
        )


def without_pythonpath() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH from the Makefile or pytest."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_benchmark_commands_start():
    # `--help` after the README's own flags: the module imports without PYTHONPATH and its flags
    # parse, without running the benchmark.
    commands = matching(r"\.venv/bin/python -m benchmarks\.\w+.*")
    assert len(commands) >= 5, commands
    for command in commands:
        result = subprocess.run(
            [*shlex.split(command), "--help"],
            cwd=REPO,
            env=without_pythonpath(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"


def test_local_options_print():
    (command,) = matching(r"PYTHONPATH=plugins \.venv/bin/python -m fruits\.local_platform")
    printed = subprocess.run(
        shlex.split(command.split(" ", 1)[1]),
        cwd=REPO,
        env={**without_pythonpath(), "PYTHONPATH": "plugins"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "local[" in printed  # the master make featurize runs


def test_featurize_synopsis_flags_parse():
    import featurize

    for command in matching(r"spark-submit spark_jobs/featurize\.py .*"):
        flags = re.findall(r"(--[a-z-]+)", command)
        words = []
        for flag in flags:  # each flag with a value its parser accepts
            words += [flag, {"--engine": "tflite", "--image-size": "224"}.get(flag, "x")]
        featurize.parse_args(words)


def test_make_featurize_runs_as_written(tmp_path, sample_dir):
    (command,) = matching(r"make featurize .*")
    home = tmp_path / "home"  # `~/photos/fruits` of the README: a few real photos
    photos = home / "photos" / "fruits"
    for source in sorted((sample_dir / "Test").iterdir())[:2]:
        (photos / "Test" / source.name).mkdir(parents=True)
        for image in sorted(source.glob("*.jpg"))[:2]:
            shutil.copy(image, photos / "Test" / source.name / image.name)
    output = Path(re.search(r"OUTPUT=(\S+)", command).group(1))
    shutil.rmtree(output, ignore_errors=True)
    env = {**without_pythonpath(), "HOME": str(home)}
    result = subprocess.run(  # noqa: S602 (the README's command line, as a user's shell runs it)
        command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((output / "_manifest.json").read_text())
    assert manifest["counts"] == {"read": 4, "featurized": 4, "quarantined": 0}
    assert manifest["input"].endswith(str(photos))
    shutil.rmtree(output)


def test_the_readme_commands_run_with_this_python():
    # The README's commands call .venv/bin/python: the suite must run in that venv.
    assert Path(sys.executable).parent.parent.resolve() == (REPO / ".venv").resolve()


def test_every_page_is_read_and_every_json_block_parses():
    assert {page.name for page in PAGES} >= {"README.md", "deploy-aws.md", "configuration.md"}
    for page in PAGES:
        for block in re.findall(r"```json\n(.*?)```", page.read_text(), re.S):
            json.loads(block)  # a policy or a Variable a reader pastes


def test_the_airflow_side_is_airflow_only():
    # What deploy-aws.md installs on Airflow machines: Airflow, its providers and the Blob SDK;
    # the cluster's and the test tools' packages are in the files that include it.
    pins = [
        line.split("==")[0].split("[")[0]
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert pins and all(
        name.startswith("apache-airflow") or name == "azure-storage-blob" for name in pins
    ), pins
    local = (REPO / "requirements-local.txt").read_text()
    assert "-r requirements.txt" in local and "-r spark_jobs/requirements.in" in local
    assert "-r requirements-local.txt" in (REPO / "requirements-dev.txt").read_text()


def run_as_a_shell(command: str, folder: Path, env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S602 (the page's command line, as a user's shell runs it)
        command, shell=True, cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


AZURE = {
    "AZURE_STORAGE_ACCOUNT": "fruitsexample",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000c1d0",
    "AZURE_CLIENT_SECRET": "not-a-real-secret",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000000a1",
    "DATABRICKS_HOST": "dbc-example.cloud.databricks.com",
    "DATABRICKS_TOKEN": "dapi-not-a-real-token",
}


def stored_connection(conn_id: str):
    """The connection as Airflow stored it, read from the metadata database as the hooks read
    it, in this process (an `airflow connections get` would cost seconds of imports)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        stored = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        assert stored is not None, conn_id
        session.expunge(stored)  # its password and extra decrypt outside the session too
    return stored


def stored_variable(key: str) -> str:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(Variable).where(Variable.key == key)).val


DEPLOY_CONNECTIONS = ("fruits_aws", "fruits_databricks", "fruits_wasb")


@pytest.fixture
def forgotten_afterwards(airflow_db):
    """The metadata database is the worker's, shared with the modules it runs next: what the
    commands store goes when the test ends (a stored fruits_databricks made
    test_dag_databricks_run's missing-connection test find one)."""
    yield
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(Connection).where(Connection.conn_id.in_(DEPLOY_CONNECTIONS)))
        session.execute(delete(Variable).where(Variable.key == "fruits_config"))


def test_the_connection_and_variable_commands(forgotten_afterwards, tmp_path, monkeypatch):
    """deploy-aws.md's `airflow connections add` and `airflow variables set`, run as written in a
    private Airflow, then read back by the providers' own code: WasbHook.get_conn builds a
    service-principal credential (tenant_id, login, password) or DefaultAzureCredential (no
    secret; managed_identity_client_id, workload_identity_tenant_id): the branches of
    airflow/providers/microsoft/azure/hooks/wasb.py, WasbHook.get_conn. Never an account key."""
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    from fruits.config import parse_variable
    from fruits.iam import config_from_variable

    folder = in_scratch_folder(tmp_path)
    shutil.copy(REPO / "iam" / "example-fruits_config.json", folder / "fruits_config.json")
    env = {**without_pythonpath(), **AZURE}
    airflow = str(Path(sys.executable).with_name("airflow"))
    commands = matching(r"airflow connections add .*")
    by_id: dict[str, list[str]] = {}
    for command in commands:
        by_id.setdefault(command.split()[3], []).append(command)
    assert sorted(by_id) == list(DEPLOY_CONNECTIONS), by_id

    built = {}
    for conn_id, variants in by_id.items():
        for variant, command in enumerate(variants):
            if variant:  # the variant before added it (each CLI call costs seconds of imports)
                run_as_a_shell(f"{airflow} connections delete {conn_id}", folder, env)
            run_as_a_shell(command, folder, env)
            connection = stored_connection(conn_id)
            if conn_id == "fruits_aws":
                wrapper = AwsConnectionWrapper(connection)
                assert wrapper.region_name == "eu-west-1"
                assert wrapper.aws_access_key_id is None  # the role Airflow runs as
            elif conn_id == "fruits_wasb":
                monkeypatch.setattr(
                    WasbHook, "get_connection", staticmethod(lambda _id, c=connection: c)
                )
                client = WasbHook(wasb_conn_id=conn_id).get_conn()
                assert client.account_name == AZURE["AZURE_STORAGE_ACCOUNT"]
                built[type(client.credential)] = connection
                assert "account_key" not in connection.extra_dejson
            else:
                assert connection.host == f"https://{AZURE['DATABRICKS_HOST']}"
                assert connection.password == AZURE["DATABRICKS_TOKEN"]
    assert set(built) == {ClientSecretCredential, DefaultAzureCredential}
    assert built[DefaultAzureCredential].password is None  # no secret at all

    (command,) = matching(r"airflow variables set fruits_config .*")
    run_as_a_shell(command, folder, env)
    stored = stored_variable("fruits_config")
    assert json.loads(stored) == json.loads((folder / "fruits_config.json").read_text())
    config_from_variable(parse_variable(stored))  # valid settings, as the DAG reads them


def test_the_dag_list_commands(airflow_db):
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")}
    printed = {
        command: run_as_a_shell(command.replace("airflow", airflow, 1), REPO, env)
        for command in matching(r"airflow dags list(-import-errors)?")
    }
    assert set(printed) == {"airflow dags list", "airflow dags list-import-errors"}
    assert "fruits_pipeline" not in printed["airflow dags list-import-errors"]


def test_the_aws_iam_commands_run_against_moto(tmp_path):
    """deploy-aws.md's `aws iam` calls, in order, as the AWS CLI maps them onto the API
    (`create-role --role-name X` is CreateRole(RoleName=X), `file://` a file's text), against
    moto, with the documents the `localdev.policies` commands render and the page's MWAA
    trust policy for the Airflow role. moto checks each document is a policy IAM would accept."""
    import boto3
    from moto import mock_aws

    folder = in_scratch_folder(tmp_path)
    shutil.copy(REPO / "iam" / "example-fruits_config.json", folder / "fruits_config.json")
    for command in matching(r"PYTHONPATH=plugins \.venv/bin/python -m localdev\.policies .*"):
        run_as_a_shell(command, folder, without_pythonpath())
    deploy = (REPO / "docs" / "deploy-aws.md").read_text()
    mwaa_trust = next(b for b in re.findall(r"```json\n(.*?)```", deploy, re.S) if "airflow" in b)

    def as_api(command: str) -> tuple[str, dict[str, str]]:
        _, _, operation, *words = shlex.split(command)
        params = {}
        for flag, value in zip(words[::2], words[1::2], strict=True):
            name = "".join(part.capitalize() for part in flag.removeprefix("--").split("-"))
            if value.startswith("file://"):
                value = (folder / value.removeprefix("file://")).read_text()
            params[name] = value
        return operation.replace("-", "_"), params

    lines = "".join(re.findall(r"```bash\n(.*?)```", deploy, re.S)).splitlines()
    commands = [line for line in lines if line.startswith("aws iam ")]  # in the page's order
    assert len(commands) == 7, commands
    with mock_aws():
        client = boto3.client("iam", region_name="us-east-1")
        client.create_role(RoleName="FruitsAirflow", AssumeRolePolicyDocument=mwaa_trust)
        for command in commands:
            operation, params = as_api(command)
            getattr(client, operation)(**params)
        profile = client.get_instance_profile(InstanceProfileName="FruitsEmrInstanceProfile")
        assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [
            "FruitsEmrInstanceRole"
        ]
        for role in ("FruitsAirflow", "FruitsEmrServiceRole", "FruitsEmrInstanceRole"):
            assert client.list_role_policies(RoleName=role)["PolicyNames"] == ["fruits"]
        trust = client.get_role(RoleName="FruitsEmrServiceRole")["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
