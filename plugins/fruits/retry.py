"""Retry a task only for the AWS errors a retry can cure: throttling, 5xx, a dropped connection.

botocore already retries each call a few times; an error that outlasts those attempts (a long
throttling burst on DescribeStep, an endpoint down for a minute) fails the try. For a step's
watcher that must not fail the night: `RETRY_TRANSIENT_AWS_ERRORS` retries the task instead (a
watcher's retry polls the same step again, it never adds one), and fails at once on anything
else, such as a FAILED step or AccessDenied, where a retry would only delay the teardown.
"Transient" is botocore's own judgement: the checkers of its "standard" retry mode.
"""

from __future__ import annotations

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

CHECKERS = (ThrottledRetryableChecker(), TransientRetryableChecker())


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        context = RetryContext(
            attempt_number=1,
            parsed_response=error.response,
            http_response=AWSResponse(None, status, {}, None) if status else None,
        )
    else:  # botocore's connection and HTTP client errors are exceptions of their own
        context = RetryContext(attempt_number=1, caught_exception=error)
    return any(checker.is_retryable(context) for checker in CHECKERS)


class TransientAwsErrors(RetryPolicy):
    def evaluate(self, exception, try_number, max_tries, context=None) -> RetryDecision:
        if is_transient(exception):
            return RetryDecision.retry(reason=f"transient AWS error: {exception}")
        return RetryDecision.fail(reason=f"not a transient AWS error: {type(exception).__name__}")


RETRY_TRANSIENT_AWS_ERRORS = TransientAwsErrors()
