"""featurize compares the weights it loads with the deployment's pinned sha256 (--weights-sha256,
from fruits_config.weights_sha256), on the driver, before any model is built."""

from __future__ import annotations

import hashlib

import pytest

import backbone
import featurize

pytestmark = pytest.mark.unit

URI = "s3://lake/weights/mobilenet.weights.h5"
CONTENT = b"not really weights"


def storage() -> backbone.Storage:
    return backbone.Storage(read={URI: CONTENT}.__getitem__, write=None, exists={URI}.__contains__)


def test_other_weights_than_the_pinned_ones_stop_the_job_naming_the_setting():
    with pytest.raises(SystemExit) as stopped:
        backbone.load_weights_on_driver(URI, 32, "tflite", storage(), expected_sha256="0" * 64)
    message = str(stopped.value)
    assert "--weights-sha256" in message and "weights_sha256" in message
    assert hashlib.sha256(CONTENT).hexdigest() in message


@pytest.mark.parametrize("expected", [None, hashlib.sha256(CONTENT).hexdigest().upper()])
def test_the_pinned_weights_or_none_pinned_pass_to_loading(expected):
    # Past the sha256 check, the next check (the file's format) is the one that speaks.
    with pytest.raises(SystemExit, match="is not an HDF5 file"):
        backbone.load_weights_on_driver(URI, 32, "tflite", storage(), expected_sha256=expected)


def test_the_flag_reaches_the_job():
    base = ["--input", "in", "--output", "out", "--weights", URI]
    assert featurize.parse_args([*base, "--weights-sha256", "ab" * 32]).weights_sha256 == "ab" * 32
    assert featurize.parse_args(base).weights_sha256 is None
