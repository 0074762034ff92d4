"""The pinned weights artifact: in the lake, with the sha256 fruits_config pins.

A missing or different artifact fails the run for good (AirflowFailException): no retry can
make it the pinned one, and a retried check would only read the whole file again."""

from __future__ import annotations

import hashlib
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from fruits.lake import split_s3_uri


def verify_weights(s3_hook, uri: str, expected_sha256: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(uri)
    if not s3_hook.check_for_key(key, bucket_name=bucket):
        raise AirflowFailException(
            f"weights artifact {uri} is missing: upload the pinned .weights.h5 there "
            "(see docs/deploy-aws.md, step 4) or fix fruits_config.weights_uri"
        )
    body = s3_hook.get_key(key, bucket_name=bucket).get()["Body"]
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != expected_sha256:
        raise AirflowFailException(
            f"weights artifact {uri} has sha256 {digest.hexdigest()}, "
            f"but fruits_config.weights_sha256 pins {expected_sha256}: refusing to run"
        )
    return {"uri": uri, "sha256": expected_sha256, "size": size}
