"""Invalid configuration fails before anything is created, naming the setting."""

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fruits.config import (
    FEATURE_SIZE,
    PREFIXES,
    ConfigError,
    Deployment,
    Platform,
    RunConfig,
    parse_variable,
)
from fruits.night_runs import run_date_of
from fruits.spark_sizing import instance_vcpus
from localdev import lake

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
VARIABLE = lake.fruits_config("s3://fruits-lake/models/mobilenet.weights.h5", "e" * 64)


def build(params=None, **variable):
    return RunConfig.build(
        {"run_date": "2026-11-25", **(params or {})}, {**VARIABLE, **variable}, Deployment()
    )


def test_a_valid_config_derives_the_nights_locations():
    config = build()
    assert config.input_uri == "s3://fruits-lake/landing/2026-11-25"  # the night's photos only
    assert config.features_partition_prefix == "features/ingest_date=2026-11-25"
    assert config.quarantine_partition_prefix == "quarantine/ingest_date=2026-11-25"
    assert config.output_uri("pca") == "s3://fruits-lake/runs/2026-11-25/pca"
    assert RunConfig.from_dict(config.to_dict()) == config
    # A one-off input: other photos, the same night's partition.
    one_off = build({"input_prefix": "/uploads/batch-7/"})
    assert one_off.input_uri == "s3://fruits-lake/uploads/batch-7"
    assert one_off.features_partition_prefix == config.features_partition_prefix


def test_platform_settings_come_from_prefixed_variable_keys():
    config = build(databricks_num_workers=4, emr_core_instance_count=3)
    assert (config.databricks.num_workers, config.emr.core_instance_count) == (4, 3)
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("params", "variable", "named"),
    [
        ({"platform": "kubernetes"}, {}, "platform='kubernetes'"),
        ({"pca_variance": 1.5}, {}, "pca_variance=1.5"),
        ({"pca_variance": 0}, {}, "pca_variance=0.0"),
        ({"pca_k": 5000}, {}, "pca_k=5000"),
        ({"run_date": "25/11/2026"}, {}, "run_date='25/11/2026'"),
        ({}, {"lake_bucket": "Fruits_Lake!"}, "lake_bucket='Fruits_Lake!'"),
        ({}, {"azure_container": "a--b"}, "azure_container='a--b'"),
        ({}, {"weights_uri": "https://example.org/w.h5"}, "weights_uri="),
        ({}, {"weights_sha256": "abc"}, "weights_sha256='abc'"),
        ({}, {"lake_bucket": ""}, "lake_bucket is required"),
        ({}, {"lake_buckt": "x"}, "unknown setting(s) ['lake_buckt']"),
        ({}, {"moments_prefix": "runs"}, "distinct prefixes"),
        ({}, {"features_prefix": "feat ures?"}, "features_prefix='feat ures?'"),
        ({}, {"databricks_num_workers": 0}, "databricks_num_workers=0"),
        ({}, {"databricks_spark_version": "latest"}, "databricks_spark_version='latest'"),
        ({}, {"emr_core_instance_count": 0}, "emr_core_instance_count=0"),
    ],
)
def test_invalid_settings_are_named(params, variable, named):
    with pytest.raises(ConfigError) as error:
        build(params, **variable)
    assert named in str(error.value)


def test_a_missing_or_broken_variable_is_named():
    with pytest.raises(ConfigError, match="fruits_config is missing"):
        parse_variable(None)
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_variable("{region: eu}")


def test_deployment_settings_are_checked():
    with pytest.raises(ConfigError, match="FRUITS_DEFAULT_PLATFORM='gcp'"):
        Deployment.from_env({"FRUITS_DEFAULT_PLATFORM": "gcp"})
    assert Deployment.from_env({"FRUITS_S3_VERIFY": "/etc/ca.pem"}).s3_verify == "/etc/ca.pem"
    assert Deployment.from_env({}).s3_verify is True


NIGHT = datetime(2026, 11, 24, 2, tzinfo=timezone.utc)  # the scheduled night's logical date
TRIGGERED = datetime(2026, 11, 25, 9, 30, tzinfo=timezone.utc)  # its run_after, or a trigger's
PARIS = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("form_date", "logical_date", "run_after", "expected"),
    [
        ("2026-03-01", NIGHT, TRIGGERED, "2026-03-01"),  # the form wins over everything
        (None, NIGHT, TRIGGERED, "2026-11-24"),  # a night, a backfill, a UI trigger
        ("", NIGHT, TRIGGERED, "2026-11-24"),  # an emptied form field counts as not given
        (None, None, TRIGGERED, "2026-11-25"),  # REST / `airflow dags trigger`: no logical date
        # The date is UTC's, like the schedule's: 00:30 in Paris is still the 24th in UTC.
        (None, None, datetime(2026, 11, 25, 0, 30, tzinfo=PARIS), "2026-11-24"),
        (None, datetime(2026, 11, 25, 0, 30, tzinfo=PARIS), TRIGGERED, "2026-11-24"),
    ],
)
def test_a_runs_date_comes_from_the_form_then_logical_date_then_run_after(
    form_date, logical_date, run_after, expected
):
    assert run_date_of(form_date, logical_date, run_after) == expected


@pytest.mark.parametrize(
    ("params", "variable", "named"),
    [
        # JSON has numbers: a quoted one is a mistake to name, not a value to guess at.
        ({}, {"emr_core_instance_count": "2"}, "emr_core_instance_count='2' is invalid"),
        ({}, {"databricks_num_workers": 2.5}, "databricks_num_workers=2.5 is invalid"),
        ({}, {"emr_subnet_id": 5}, "emr_subnet_id=5 is invalid"),
        ({"pca_k": "abc"}, {}, "pca_k='abc' is invalid"),
        ({"pca_variance": "0.9"}, {}, "pca_variance='0.9' is invalid"),
        # One owner per setting: fruits_config may not shadow the run form or the deployment.
        ({}, {"pca_k": 3}, "pca_k is a run setting"),
        ({}, {"aws_conn_id": "other"}, "set FRUITS_AWS_CONN_ID"),
        ({}, {"databricks_conn_id": "other"}, "set FRUITS_DATABRICKS_CONN_ID"),
        ({}, {"step_timeout_s": 60}, "set FRUITS_STEP_TIMEOUT_S"),
    ],
)
def test_a_setting_of_the_wrong_type_or_owner_is_named(params, variable, named):
    with pytest.raises(ConfigError) as error:
        build(params, **variable)
    assert named in str(error.value)


def test_a_deployment_number_that_is_not_one_is_named():
    with pytest.raises(ConfigError, match="FRUITS_TASK_TIMEOUT_S='1h' is invalid"):
        Deployment.from_env({"FRUITS_TASK_TIMEOUT_S": "1h"})


def test_a_weights_file_asked_for_must_exist(monkeypatch, tmp_path):
    # A typo must not run other weights (the shared backbone is beside the repository here).
    from localdev.run_pipeline import PRETRAINED_WEIGHTS, find_weights

    assert PRETRAINED_WEIGHTS.is_file()
    monkeypatch.delenv("FRUITS_WEIGHTS_FILE", raising=False)
    with pytest.raises(SystemExit, match=r"--weights /typo\.h5: no such file"):
        find_weights(Path("/typo.h5"))
    monkeypatch.setenv("FRUITS_WEIGHTS_FILE", "/typo.h5")
    with pytest.raises(SystemExit, match=r"FRUITS_WEIGHTS_FILE /typo\.h5: no such file"):
        find_weights(None)
    given = tmp_path / "mine.h5"
    given.write_bytes(b"weights")
    assert find_weights(given) == given
    monkeypatch.delenv("FRUITS_WEIGHTS_FILE")
    assert find_weights(None) == PRETRAINED_WEIGHTS


@pytest.mark.parametrize(
    ("instance_type", "vcpus"),  # AWS's own figures for these types
    [
        ("m5.large", 2),
        ("c5.xlarge", 4),
        ("m5d.2xlarge", 8),
        ("r6i.12xlarge", 48),
        ("m7g.16xlarge", 64),
        ("m5.metal", None),
        ("t3.medium", None),
        ("Standard_DS3_v2", None),
    ],
)
def test_an_instance_types_vcpus_come_from_its_size(instance_type, vcpus):
    assert instance_vcpus(instance_type) == vcpus


def test_a_databricks_node_type_whose_vcpus_are_unknown_is_named():
    with pytest.raises(ConfigError, match="databricks_node_type_id='m5.metal'"):
        build(databricks_node_type_id="m5.metal")
    assert build(databricks_node_type_id="c5.4xlarge").databricks.node_type_id == "c5.4xlarge"


def test_the_spark_jobs_folder_is_a_checked_setting(tmp_path):
    jobs = ["featurize.py", "pca.py", "classify.py", "requirements.lock"]
    beside_dags = REPO / "spark_jobs"
    assert Deployment.from_env({}).spark_jobs_folder(beside_dags, jobs) == beside_dags
    elsewhere = tmp_path / "jobs"
    shutil.copytree(beside_dags, elsewhere)
    moved = Deployment.from_env({"FRUITS_SPARK_JOBS_DIR": str(elsewhere)})
    assert moved.spark_jobs_folder(beside_dags, jobs) == elsewhere
    (elsewhere / "pca.py").unlink()
    with pytest.raises(ConfigError, match=r"FRUITS_SPARK_JOBS_DIR=.*missing there: pca\.py"):
        moved.spark_jobs_folder(beside_dags, jobs)
    relative = Deployment.from_env({"FRUITS_SPARK_JOBS_DIR": "spark_jobs"})
    with pytest.raises(ConfigError, match="FRUITS_SPARK_JOBS_DIR='spark_jobs'.*absolute"):
        relative.spark_jobs_folder(beside_dags, jobs)


def test_every_deployment_setting_is_read_from_its_fruits_variable():
    """fruits_config refuses every Deployment field, naming FRUITS_<NAME> (config's
    DEPLOYMENT_SETTINGS is derived from the dataclass): each of those variables must be the one
    Deployment.from_env reads."""
    from dataclasses import fields

    given = {
        "aws_conn_id": "a",
        "wasb_conn_id": "w",
        "databricks_conn_id": "d",
        "default_platform": "local",
        "s3_verify": "/etc/ca.pem",
        "step_timeout_s": "7200",
        "step_grace_s": "600",
        "poll_interval_s": "30",
        "deferrable": "false",
        "retry_delay_s": "5",
        "task_timeout_s": "600",
        "run_timeout_s": "100000",
        "scratch_dir": "/tmp/elsewhere",
        "spark_jobs_dir": "/opt/spark_jobs",
    }
    assert set(given) == {f.name for f in fields(Deployment)}
    read = Deployment.from_env({f"FRUITS_{name.upper()}": value for name, value in given.items()})
    assert {name: getattr(read, name) != getattr(Deployment(), name) for name in given} == {
        name: True for name in given
    }


def test_a_setting_left_out_takes_its_one_default():
    """The defaults a fruits_config without them gets, and the run form's: RunConfig's fields
    own them, build and the DAG's Params read them there."""
    bare = {k: v for k, v in VARIABLE.items() if k not in ("landing_prefix", "azure_prefix")}
    config = RunConfig.build({"run_date": "2026-11-25"}, bare, Deployment())
    assert {
        name: getattr(config, name)
        for name in (
            "landing_prefix",
            "features_prefix",
            "quarantine_prefix",
            "vectors_prefix",
            "moments_prefix",
            "runs_prefix",
            "code_prefix",
            "logs_prefix",
            "model_cache_prefix",
            "azure_prefix",
            "pca_variance",
            "pca_k",
            "project_tag",
            "lake_kms_key_arn",
        )
    } == {
        "landing_prefix": "landing",
        "features_prefix": "features",
        "quarantine_prefix": "quarantine",
        "vectors_prefix": "vectors",
        "moments_prefix": "moments",
        "runs_prefix": "runs",
        "code_prefix": "code",
        "logs_prefix": "emr-logs",
        "model_cache_prefix": "models/compiled",
        "azure_prefix": "fruits",
        "pca_variance": 0.95,
        "pca_k": None,
        "project_tag": "fruits",
        "lake_kms_key_arn": "",
    }
    assert all(getattr(config, name) == RunConfig.default(name) for name in PREFIXES)


def test_pca_k_is_bounded_by_the_jobs_feature_size():
    """The run form's and the config's maximum k is the featurize job's vector size
    (spark_jobs/backbone.py, read without importing TensorFlow)."""
    import ast

    tree = ast.parse((REPO / "spark_jobs" / "backbone.py").read_text())
    (size,) = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "FEATURE_SIZE"
    ]
    assert size == FEATURE_SIZE
    build({"pca_k": size})
    with pytest.raises(ConfigError, match=f"an integer in \\[1, {size}\\]"):
        build({"pca_k": size + 1})


def test_the_pca_jobs_default_variance_is_the_configs():
    """pca.py's own `--variance` default (for a user running the job by hand; the DAG always
    passes one) is the config's, read without importing pyspark."""
    import ast

    tree = ast.parse((REPO / "spark_jobs" / "pca.py").read_text())
    (variance,) = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "DEFAULT_VARIANCE"
    ]
    assert variance == RunConfig.default("pca_variance")


def test_the_platform_is_a_type_and_travels_as_text():
    config = build({"platform": "databricks"})
    assert config.platform is Platform.DATABRICKS
    assert type(config.to_dict()["platform"]) is str  # XCom stores JSON
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="platform='gcp' is invalid"):
        build({"platform": "gcp"})
    with pytest.raises(ConfigError, match="FRUITS_DEFAULT_PLATFORM='gcp' is invalid"):
        Deployment.from_env({"FRUITS_DEFAULT_PLATFORM": "gcp"})
