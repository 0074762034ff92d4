"""check_weights: the pinned weights artifact is in the lake with the pinned sha256, or the run
fails for good (a retry cannot make a missing or different artifact the pinned one)."""

from __future__ import annotations

import hashlib
import inspect
import io

import pytest
from airflow.sdk.exceptions import AirflowFailException

from fruits.config import Deployment, RunConfig
from localdev import lake

pytestmark = pytest.mark.unit
WEIGHTS = b"\x89HDF\r\n\x1a\n pinned weights"
URI = "s3://fruits-lake/models/mobilenet.weights.h5"


class LakeObjects:
    """The two S3Hook calls verify_weights makes, over a dict of bucket/key -> bytes."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects

    def check_for_key(self, key: str, bucket_name: str) -> bool:
        return f"{bucket_name}/{key}" in self.objects

    def get_key(self, key: str, bucket_name: str):
        body = io.BytesIO(self.objects[f"{bucket_name}/{key}"])
        return type("S3Object", (), {"get": lambda _self: {"Body": body}})()


def check_weights(parsed_dag, monkeypatch, objects: dict[str, bytes]):
    """The parsed DAG's own task callable, on a run's config, against these lake objects."""
    callable_ = parsed_dag.get_task("setup.check_weights").python_callable
    dag_module = inspect.unwrap(callable_).__globals__  # the DAG file's, under with_run_config
    monkeypatch.setitem(dag_module, "lake_hook", lambda run: LakeObjects(objects))
    variable = lake.fruits_config(URI, hashlib.sha256(WEIGHTS).hexdigest())
    config = RunConfig.build({"run_date": "2026-11-25"}, variable, Deployment()).to_dict()
    return callable_(config)


def test_the_pinned_artifact_passes_and_is_described(parsed_dag, monkeypatch):
    found = check_weights(
        parsed_dag, monkeypatch, {"fruits-lake/models/mobilenet.weights.h5": WEIGHTS}
    )
    assert found == {
        "uri": URI,
        "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
        "size": len(WEIGHTS),
    }


def test_a_missing_artifact_fails_the_run_for_good_naming_it(parsed_dag, monkeypatch):
    with pytest.raises(AirflowFailException, match=f"weights artifact {URI} is missing"):
        check_weights(parsed_dag, monkeypatch, {"fruits-lake/models/other.weights.h5": WEIGHTS})


def test_a_different_artifact_fails_the_run_for_good_naming_both_digests(parsed_dag, monkeypatch):
    other = WEIGHTS + b"!"
    with pytest.raises(AirflowFailException) as refused:
        check_weights(parsed_dag, monkeypatch, {"fruits-lake/models/mobilenet.weights.h5": other})
    assert hashlib.sha256(other).hexdigest() in str(refused.value)
    assert f"pins {hashlib.sha256(WEIGHTS).hexdigest()}" in str(refused.value)
