"""The pipeline's configuration: one typed, validated object per run.

Three sources, merged in one place:
- the deployment (env vars `FRUITS_*`, read when the DAG file is parsed): connection ids and the
  run form's default platform, which must be known before any run exists;
- the Airflow Variable `fruits_config` (JSON): buckets, container, region, cluster sizing, roles,
  weights artifact... everything that differs between environments;
- the run's Params (the trigger form): date, input prefix, PCA variance or k, platform.

`RunConfig.build(...)` validates everything before any cluster exists and says which setting is
wrong. Each setting has one owner: a RunConfig field's default is the default for fruits_config
and the run form alike. Credentials never pass through here: they live in Airflow connections.
(The run's lake locations, `run_prefix` and the partitions, are RunConfig properties for now.
Spark sizing is `fruits.spark_sizing`'s, the date a run processes `fruits.night_runs`'.)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import date
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, get_type_hints

from fruits.databricks_runtime import RUNTIME as DATABRICKS_RUNTIME
from fruits.lake_layout import PARTITION_KEY
from fruits.spark_sizing import EMR_CORE_NODES, EMR_TASK_CONFIG_URL, instance_vcpus


class Platform(StrEnum):
    """Where a night's Spark jobs run. The run form and FRUITS_DEFAULT_PLATFORM give the value
    as plain text; `RunConfig.build` and `Deployment.from_env` turn it into one of these."""

    EMR = "emr"  # production: one EMR cluster per run
    LOCAL = "local"  # Spark local mode on the Airflow worker, inputs staged from S3
    DATABRICKS = "databricks"  # one Databricks job run on a job cluster


PLATFORMS = tuple(platform.value for platform in Platform)  # the run form's choices
# PCA keeps at most one component per feature: MobileNetV2's pooled vector has 1280.
FEATURE_SIZE = 1280
# Every key prefix of the lake that fruits_config can set (validated alike, each one granted by
# name in the IAM policies), and the ones whose folders hold the nights' outputs.
OUTPUT_ROOTS = (
    "features_prefix",
    "quarantine_prefix",
    "vectors_prefix",
    "moments_prefix",
    "runs_prefix",
)
PREFIXES = ("landing_prefix", *OUTPUT_ROOTS, "code_prefix", "logs_prefix", "model_cache_prefix")
BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/ -]*$")
# What an IAM policy can hold in a resource ARN or a condition: no `*` or `?` wildcards, which
# would widen a policy rendered from the value, and no `$`, which starts an IAM policy variable.
TAG_VALUE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,256}$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
IAM_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A KMS key's ARN (an alias cannot be granted in an IAM policy): a single- or multi-Region key.
KMS_KEY_ARN = re.compile(
    r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/"
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
# One owner per setting: the run form (Params) owns a run's choices, the deployment (FRUITS_*)
# the connection ids; fruits_config owns everything else and may not shadow either.
RUN_FORM_SETTINGS = ("platform", "run_date", "input_prefix", "pca_variance", "pca_k")
# The night's longest chain of tasks (dags/fruits_pipeline.py, platform emr): its Spark jobs'
# watchers, and this many other tasks one after the other (tests/test_dag_structure.py counts them
# in the DAG).
SPARK_JOBS, SERIAL_TASKS = 3, 13


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Deployment:
    """What the DAG file needs at parse time, from the environment (`FRUITS_*`)."""

    aws_conn_id: str = "fruits_aws"
    wasb_conn_id: str = "fruits_wasb"
    databricks_conn_id: str = "fruits_databricks"
    default_platform: Platform = Platform.EMR
    # TLS verification of S3: "true", "false" (never in production) or a CA bundle path.
    s3_verify: bool | str = True
    # EMR steps run TensorFlow for a long time: generous defaults, deferrable sensors. A Spark
    # job ends itself after step_timeout_s (an EMR step under coreutils `timeout`, a Databricks
    # task's timeout_seconds); what waits for it (a step's watcher, a local job) gives up
    # step_grace_s later: the cluster's start (the first step waits for it) and the job's end.
    step_timeout_s: int = 4 * 3600
    step_grace_s: int = 20 * 60
    poll_interval_s: int = 60
    deferrable: bool = True
    retry_delay_s: int = 60
    # Every other task ends within task_timeout_s, and a run within run_timeout_s. The run's
    # timeout must be the last to fire: Airflow marks every unfinished task of a timed-out run
    # skipped, the teardown that terminates the cluster included.
    task_timeout_s: int = 30 * 60
    run_timeout_s: int = 23 * 3600  # under a day: the next nightly run can always start

    @property
    def spark_wait_s(self) -> int:
        """How long a task waiting for one Spark job may take."""
        return self.step_timeout_s + self.step_grace_s

    @property
    def longest_run_s(self) -> int:
        """A night whose tasks on its longest chain each take their whole timeout (one try)."""
        return SPARK_JOBS * self.spark_wait_s + SERIAL_TASKS * self.task_timeout_s

    # The local platform's staging area. It also keeps the converted-model cache from one run to
    # the next, so the default is a fixed folder, not a fresh temporary one.
    scratch_dir: str = os.path.join(tempfile.gettempdir(), "fruits-scratch")
    # Where the Spark jobs are on the Airflow machines ("": spark_jobs/ next to dags/). Set it
    # where dags/ can hold nothing else (MWAA: only dags/, plugins.zip, requirements.txt).
    spark_jobs_dir: str = ""

    def spark_jobs_folder(self, next_to_dags: Path, holding: Sequence[str]) -> Path:
        """The folder of the Spark jobs: FRUITS_SPARK_JOBS_DIR, else spark_jobs/ next to dags/.
        Checked when the DAG is parsed, so a wrong place is an import error naming the setting,
        not a run that uploads an empty code bundle."""
        folder = Path(self.spark_jobs_dir) if self.spark_jobs_dir else next_to_dags
        missing = [name for name in holding if not (folder / name).is_file()]
        _check(
            not missing,
            "FRUITS_SPARK_JOBS_DIR",
            str(folder),
            f"an absolute path to the folder holding {', '.join(holding)} "
            f"(missing there: {', '.join(missing)}; unset, it is spark_jobs/ next to dags/)",
        )
        _check(folder.is_absolute(), "FRUITS_SPARK_JOBS_DIR", str(folder), "an absolute path")
        return folder

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Deployment:
        env = os.environ if environ is None else environ
        verify = env.get("FRUITS_S3_VERIFY", "true")
        deployment = cls(
            aws_conn_id=env.get("FRUITS_AWS_CONN_ID", cls.aws_conn_id),
            wasb_conn_id=env.get("FRUITS_WASB_CONN_ID", cls.wasb_conn_id),
            databricks_conn_id=env.get("FRUITS_DATABRICKS_CONN_ID", cls.databricks_conn_id),
            default_platform=_platform(
                "FRUITS_DEFAULT_PLATFORM", env.get("FRUITS_DEFAULT_PLATFORM", cls.default_platform)
            ),
            s3_verify={"true": True, "false": False}.get(verify.lower(), verify),
            step_timeout_s=_env_seconds(env, "FRUITS_STEP_TIMEOUT_S", cls.step_timeout_s),
            step_grace_s=_env_seconds(env, "FRUITS_STEP_GRACE_S", cls.step_grace_s),
            poll_interval_s=_env_seconds(env, "FRUITS_POLL_INTERVAL_S", cls.poll_interval_s),
            deferrable=env.get("FRUITS_DEFERRABLE", "true").lower() == "true",
            retry_delay_s=_env_seconds(env, "FRUITS_RETRY_DELAY_S", cls.retry_delay_s),
            task_timeout_s=_env_seconds(env, "FRUITS_TASK_TIMEOUT_S", cls.task_timeout_s),
            run_timeout_s=_env_seconds(env, "FRUITS_RUN_TIMEOUT_S", cls.run_timeout_s),
            scratch_dir=env.get("FRUITS_SCRATCH_DIR") or cls.scratch_dir,
            spark_jobs_dir=env.get("FRUITS_SPARK_JOBS_DIR", cls.spark_jobs_dir),
        )
        _check(
            deployment.step_timeout_s >= deployment.poll_interval_s > 0,
            "FRUITS_STEP_TIMEOUT_S",
            deployment.step_timeout_s,
            "at least FRUITS_POLL_INTERVAL_S, which must be > 0",
        )
        _check(
            deployment.task_timeout_s > 0,
            "FRUITS_TASK_TIMEOUT_S",
            deployment.task_timeout_s,
            "> 0",
        )
        _check(deployment.step_grace_s >= 0, "FRUITS_STEP_GRACE_S", deployment.step_grace_s, ">= 0")
        _check(
            deployment.run_timeout_s > deployment.longest_run_s,
            "FRUITS_RUN_TIMEOUT_S",
            deployment.run_timeout_s,
            f"more than {deployment.longest_run_s} s: {SPARK_JOBS} x (FRUITS_STEP_TIMEOUT_S + "
            f"FRUITS_STEP_GRACE_S) + {SERIAL_TASKS} x FRUITS_TASK_TIMEOUT_S, the night's longest "
            "chain of tasks; a run timeout firing first skips the teardown and leaves the "
            "cluster running",
        )
        return deployment


# Every Deployment field is read from FRUITS_<NAME>: fruits_config may not set any of them.
DEPLOYMENT_SETTINGS = tuple(f.name for f in fields(Deployment))


@dataclass(frozen=True)
class EmrSettings:
    release_label: str = "emr-7.5.0"  # Spark 3.5
    primary_instance_type: str = "m5.xlarge"
    core_instance_type: str = "m5.2xlarge"
    core_instance_count: int = 2
    service_role: str = "FruitsEmrServiceRole"
    instance_profile: str = "FruitsEmrInstanceProfile"
    instance_role: str = "FruitsEmrInstanceRole"  # the role in instance_profile (for iam:PassRole)
    subnet_id: str = ""
    idle_timeout_s: int = 3600  # auto-termination safety net
    # For the night's cost estimate: m5's on-demand EC2 + EMR price in eu-west-1 (0.262 USD an
    # hour for an m5.xlarge, which counts 8 normalized units). Set your region's and type's.
    usd_per_normalized_hour: float = 0.0328


@dataclass(frozen=True)
class DatabricksSettings:
    spark_version: str = DATABRICKS_RUNTIME  # DBR 15.4 LTS ML: Spark 3.5, Python 3.11
    node_type_id: str = "m5d.2xlarge"
    num_workers: int = 2
    instance_profile_arn: str = ""  # lets the job cluster read and write the lake
    job_name: str = "fruits-features"  # created on the first run, reset to this run's spec after


# fruits_config's `emr_*` and `databricks_*` keys.
SECTIONS = {"emr": EmrSettings, "databricks": DatabricksSettings}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one run needs, validated. Serialisable to XCom as a plain dict. A field's
    default is the setting's default, for `build` and the run form alike."""

    platform: Platform
    run_date: str
    region: str
    lake_bucket: str
    landing_prefix: str = "landing"  # the app lands a day's photos under <prefix>/<YYYY-MM-DD>/
    input_prefix: str | None = None  # the run form's one-off override of the night's input
    features_prefix: str = "features"  # <prefix>/ingest_date=<date>/: one partition per night
    quarantine_prefix: str = "quarantine"  # <prefix>/ingest_date=<date>/: unreadable photos
    vectors_prefix: str = "vectors"  # <prefix>/ingest_date=<date>/: the night in its PCA basis
    # <moments_prefix>/ingest_date=<date>/: each night's statistics, PCA's and the classifier's
    moments_prefix: str = "moments"
    runs_prefix: str = "runs"
    code_prefix: str = "code"
    logs_prefix: str = "emr-logs"
    weights_uri: str
    weights_sha256: str
    model_cache_prefix: str = "models/compiled"  # TFLite models from the weights, kept
    azure_container: str
    azure_prefix: str = "fruits"
    pca_variance: float = 0.95  # k = the fewest components explaining this share
    pca_k: int | None = None  # a fixed k instead, in [1, FEATURE_SIZE]
    # The value of the `project` tag on every cluster: the IAM policies scope EMR by it.
    project_tag: str = "fruits"
    aws_account_id: str = ""  # only the IAM policies need it (python -m localdev.policies)
    # The key of the lake bucket's SSE-KMS encryption, if it has one: the IAM policies grant its
    # use through S3 (reading and writing objects encrypted with it needs it).
    lake_kms_key_arn: str = ""
    emr: EmrSettings = field(default_factory=EmrSettings)
    databricks: DatabricksSettings = field(default_factory=DatabricksSettings)

    # --- derived locations -------------------------------------------------------------------
    @property
    def run_prefix(self) -> str:
        """Where this date's models and reports live: a re-run replaces this and nothing else."""
        return f"{self.runs_prefix}/{self.run_date}"

    @property
    def input_prefix_of_night(self) -> str:
        """The night's photos: its own landing folder, or the run form's one-off override."""
        return self.input_prefix or f"{self.landing_prefix}/{self.run_date}"

    @property
    def input_uri(self) -> str:
        return f"s3://{self.lake_bucket}/{self.input_prefix_of_night}"

    def partition_prefix(self, root_prefix: str) -> str:
        """The night's Hive-style partition under a root prefix (features, quarantine, vectors,
        moments)."""
        return f"{root_prefix}/{PARTITION_KEY}={self.run_date}"

    @property
    def features_partition_prefix(self) -> str:
        return self.partition_prefix(self.features_prefix)

    @property
    def quarantine_partition_prefix(self) -> str:
        return self.partition_prefix(self.quarantine_prefix)

    @property
    def vectors_partition_prefix(self) -> str:
        return self.partition_prefix(self.vectors_prefix)

    def uri(self, prefix: str) -> str:
        return f"s3://{self.lake_bucket}/{prefix}"

    def output_uri(self, name: str) -> str:
        return self.uri(f"{self.run_prefix}/{name}")

    @property
    def model_cache_uri(self) -> str:
        return self.uri(self.model_cache_prefix)

    # --- building ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, params: dict[str, Any], variable: dict[str, Any], deployment: Deployment
    ) -> RunConfig:
        """Merge the run form, the `fruits_config` Variable and the deployment; validate."""
        _check_variable_keys(variable)
        emr, databricks = (_section(variable, name, kind) for name, kind in SECTIONS.items())
        pca_k = params.get("pca_k")
        config = cls(
            platform=_platform("platform", params.get("platform") or deployment.default_platform),
            run_date=str(params["run_date"]),
            region=_required(variable, "region"),
            lake_bucket=_required(variable, "lake_bucket"),
            input_prefix=_prefix(params["input_prefix"]) if params.get("input_prefix") else None,
            **{
                name: _prefix(variable.get(name, cls.default(name)))
                for name in (*PREFIXES, "azure_prefix")
            },
            weights_uri=_required(variable, "weights_uri"),
            weights_sha256=_required(variable, "weights_sha256"),
            azure_container=_required(variable, "azure_container"),
            pca_variance=_typed(
                "pca_variance", params.get("pca_variance", cls.default("pca_variance")), float
            ),
            pca_k=None if pca_k in (None, "") else _typed("pca_k", pca_k, int),
            project_tag=str(variable.get("project_tag", cls.default("project_tag"))),
            aws_account_id=str(variable.get("aws_account_id", cls.default("aws_account_id"))),
            lake_kms_key_arn=str(variable.get("lake_kms_key_arn", cls.default("lake_kms_key_arn"))),
            emr=emr,
            databricks=databricks,
        )
        config.validate()
        return config

    @classmethod
    def default(cls, name: str) -> Any:
        """A setting's default, as its field declares it."""
        (default,) = (f.default for f in fields(cls) if f.name == name)
        if default is MISSING:
            raise KeyError(f"{name} has no default: it is required")
        return default

    def validate(self) -> None:
        _check(
            isinstance(self.platform, Platform), "platform", self.platform, f"one of {PLATFORMS}"
        )
        try:
            date.fromisoformat(self.run_date)
        except ValueError:
            raise ConfigError(
                f"run_date={self.run_date!r} is invalid: expected YYYY-MM-DD"
            ) from None
        _check(
            bool(BUCKET_NAME.match(self.lake_bucket)),
            "lake_bucket",
            self.lake_bucket,
            "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
        )
        _check(
            bool(CONTAINER_NAME.match(self.azure_container)),
            "azure_container",
            self.azure_container,
            "an Azure container name (3-63 lowercase letters, digits, single hyphens)",
        )
        for name in (*PREFIXES, "azure_prefix"):
            value = getattr(self, name)
            _check(bool(value) and bool(PREFIX.match(value)), name, value, "a non-empty key prefix")
        if self.input_prefix is not None:
            _check(
                bool(PREFIX.match(self.input_prefix)),
                "input_prefix",
                self.input_prefix,
                "a key prefix in the lake bucket",
            )
        roots = [getattr(self, name) for name in OUTPUT_ROOTS]
        _check(
            len(set(roots)) == len(roots),
            "/".join(OUTPUT_ROOTS),
            roots,
            "distinct prefixes (each holds its own partitions)",
        )
        self._validate_aws_names()
        _check(0 < self.pca_variance <= 1, "pca_variance", self.pca_variance, "a number in (0, 1]")
        _check(
            self.pca_k is None or 1 <= self.pca_k <= FEATURE_SIZE,
            "pca_k",
            self.pca_k,
            f"an integer in [1, {FEATURE_SIZE}]",
        )
        _check(
            self.weights_uri.startswith("s3://") and self.weights_uri.endswith(".h5"),
            "weights_uri",
            self.weights_uri,
            "the s3:// URI of a pinned Keras weights file (.weights.h5 or legacy .h5)",
        )
        _check(
            bool(SHA256.match(self.weights_sha256)),
            "weights_sha256",
            self.weights_sha256,
            "64 hex digits",
        )
        _check(
            self.emr.core_instance_type in EMR_CORE_NODES,
            "emr_core_instance_type",
            self.emr.core_instance_type,
            f"one of the types whose YARN resources are known: {sorted(EMR_CORE_NODES)} "
            f"(figures from {EMR_TASK_CONFIG_URL})",
        )
        _check(
            self.emr.core_instance_count >= 1,
            "emr_core_instance_count",
            self.emr.core_instance_count,
            ">= 1",
        )
        _check(
            self.emr.idle_timeout_s >= 60, "emr_idle_timeout_s", self.emr.idle_timeout_s, ">= 60"
        )
        _check(
            self.databricks.num_workers >= 1,
            "databricks_num_workers",
            self.databricks.num_workers,
            ">= 1 (the jobs need executors)",
        )
        _check(
            (instance_vcpus(self.databricks.node_type_id) or 0) >= 1,
            "databricks_node_type_id",
            self.databricks.node_type_id,
            "an AWS node type of size large, xlarge or <n>xlarge (its vCPUs set the task slots)",
        )
        _check(
            self.databricks.spark_version == DATABRICKS_RUNTIME,
            "databricks_spark_version",
            self.databricks.spark_version,
            f"{DATABRICKS_RUNTIME}, the runtime whose libraries the job cluster completes "
            "(fruits.databricks_runtime)",
        )

    def _validate_aws_names(self) -> None:
        """What the IAM policies are rendered from must not widen them (no wildcards)."""
        _check(
            bool(REGION.match(self.region)),
            "region",
            self.region,
            "an AWS region such as eu-west-1",
        )
        _check(
            bool(TAG_VALUE.match(self.project_tag)),
            "project_tag",
            self.project_tag,
            "an EMR tag value without wildcards (letters, digits, spaces, _.:/=+@-)",
        )
        _check(
            self.aws_account_id == "" or bool(ACCOUNT_ID.match(self.aws_account_id)),
            "aws_account_id",
            self.aws_account_id,
            "12 digits",
        )
        _check(
            self.lake_kms_key_arn == "" or bool(KMS_KEY_ARN.match(self.lake_kms_key_arn)),
            "lake_kms_key_arn",
            self.lake_kms_key_arn,
            "the ARN of the lake bucket's KMS key, arn:aws:kms:<region>:<account>:key/<key id> "
            "(not an alias: IAM grants a key by its ARN)",
        )
        _check(
            self.emr.subnet_id == "" or bool(SUBNET_ID.match(self.emr.subnet_id)),
            "emr_subnet_id",
            self.emr.subnet_id,
            "a subnet id such as subnet-0abc1234",
        )
        for name in ("service_role", "instance_profile", "instance_role"):
            value = getattr(self.emr, name)
            _check(bool(IAM_NAME.match(value)), f"emr_{name}", value, "an IAM role or profile name")

    # --- XCom ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only: XCom stores it as JSON."""
        return {**asdict(self), "platform": self.platform.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(
            **{
                **data,
                "platform": Platform(data["platform"]),
                "emr": EmrSettings(**data["emr"]),
                "databricks": DatabricksSettings(**data["databricks"]),
            }
        )


P = ParamSpec("P")
R = TypeVar("R")


def with_run_config(function: Callable[Concatenate[RunConfig, P], R]) -> Callable[..., R]:
    """A task whose first argument is the run's config: XCom carries it as a dict
    (`RunConfig.to_dict`), the task's body gets the `RunConfig`. The one place tasks hydrate it."""

    @wraps(function)  # keeps the signature: Airflow passes the context values it names
    def task_body(config: dict[str, Any], *args: P.args, **kwargs: P.kwargs) -> R:
        return function(RunConfig.from_dict(config), *args, **kwargs)

    return task_body


def _section(variable: dict[str, Any], section: str, kind: type) -> Any:
    """The platform's settings from fruits_config's `<section>_<name>` keys, type-checked."""
    hints = get_type_hints(kind)
    return kind(
        **{
            f.name: _typed(key, variable[key], hints[f.name])
            for f in fields(kind)
            if (key := f"{section}_{f.name}") in variable
        }
    )


def _check_variable_keys(variable: dict[str, Any]) -> None:
    """fruits_config holds only its own settings: a typo or a setting owned elsewhere is named."""
    for name in variable:
        if name in RUN_FORM_SETTINGS:
            raise ConfigError(
                f"fruits_config: {name} is a run setting: set it in the run form (Params), "
                "not in fruits_config"
            )
        if name in DEPLOYMENT_SETTINGS:  # FRUITS_<NAME>, as Deployment.from_env reads them
            raise ConfigError(
                f"fruits_config: {name} is a deployment setting: set FRUITS_{name.upper()} "
                "in the Airflow environment, not in fruits_config"
            )
    own = {f.name for f in fields(RunConfig)} - set(RUN_FORM_SETTINGS)
    own = (own - set(SECTIONS)) | {
        f"{section}_{f.name}" for section, kind in SECTIONS.items() for f in fields(kind)
    }
    unknown = sorted(set(variable) - own)
    if unknown:
        raise ConfigError(f"fruits_config: unknown setting(s) {unknown}")


def parse_variable(raw: str | dict | None) -> dict[str, Any]:
    """The `fruits_config` Variable's JSON, with a clear error when it is missing or not JSON."""
    if raw is None:
        raise ConfigError(
            "Airflow Variable fruits_config is missing (see docs/deploy-aws.md, step 5)"
        )
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"Airflow Variable fruits_config is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ConfigError("Airflow Variable fruits_config must be a JSON object")
    return value


def _platform(setting: str, value: Any) -> Platform:
    """The run form's or the environment's text as a Platform, or an error naming the setting."""
    try:
        return Platform(value)
    except ValueError:
        raise ConfigError(f"{setting}={value!r} is invalid: expected one of {PLATFORMS}") from None


def _required(variable: dict[str, Any], name: str) -> str:
    value = variable.get(name)
    if not value:
        raise ConfigError(f"fruits_config: {name} is required")
    return str(value)


def _prefix(value: str) -> str:
    """Key prefixes are stored without leading or trailing slashes."""
    return str(value).strip().strip("/")


TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _typed(setting: str, value: Any, kind: type) -> Any:
    """The value as JSON gave it, if it has the setting's type. "2" for a count is a mistake to
    name, not to guess at: comparing or converting it later would fail without naming it."""
    is_bool = isinstance(value, bool)
    if kind is float and isinstance(value, int | float) and not is_bool:
        return float(value)
    if isinstance(value, kind) and (kind is bool or not is_bool):
        return value
    unquoted = " (a JSON number, without quotes)" if kind in (int, float) else ""
    raise ConfigError(
        f"{setting}={value!r} is invalid: expected {TYPE_NAMES[kind]}{unquoted}, "
        f"not {type(value).__name__}"
    )


def _env_seconds(env: dict[str, str] | os._Environ, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is invalid: expected a whole number of seconds"
        ) from None


def _check(condition: bool, setting: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{setting}={value!r} is invalid: expected {expected}")
