"""Retry a step's watcher only for the AWS errors a retry can cure: throttling, 5xx, a dropped
connection; fail it at once when the step itself ended badly.

botocore already retries each call a few times; an error that outlasts those attempts (a long
throttling burst on DescribeStep, an endpoint down for a minute) fails the try. For a step's
watcher that must not fail the night: `RETRY_TRANSIENT_AWS_ERRORS` retries the task instead (a
watcher's retry polls the same step again, it never adds one). "Transient" is botocore's own
judgement: the checkers of its "standard" retry mode.

A deferrable watcher's errors do not reach the policy as botocore raised them. The provider's
trigger (`AwsBaseWaiterTrigger.run` -> `async_wait`, amazon/aws/utils/waiter_with_logging.py)
turns a waiter error into an event whose message is text, and `EmrStepSensor.execute_complete`
raises it as `AirflowException("Error while running job: {event}")`; an error the trigger does
not catch (a connection error from aiobotocore) ends the trigger, and the task resumes to raise
`TaskDeferralError("Trigger failure")` (airflow.sdk BaseOperator.resume_execution) with the
cause only in the log. (A deferral timeout becomes AirflowSensorTimeout, which fails the task
without asking the policy.) So the policy reads, in that order:

- the step ended (FAILED, CANCELLED, INTERRUPTED) or outlived the watcher's budget: final;
- an AWS error, raised or named in the deferral message ("An error occurred (<code>)"):
  retried if botocore calls it transient, else final (AccessDenied, a missing step);
- a trigger that crashed: retried (it is the path of a connection error; polling again is all
  a watcher's retry does);
- anything else: the task's default retries.

`RETRY_ONLY_TRANSIENT_AWS_ERRORS` is the same judgement for a local Spark job: its only
transient failures are the S3 calls that stage its inputs and upload its outputs; anything else
(the job itself failed, nothing to read) is final, like a failed EMR step: re-run the date.
"""

from __future__ import annotations

import re

from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy
from airflow.sdk.exceptions import TaskDeferralError
from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

CHECKERS = (ThrottledRetryableChecker(), TransientRetryableChecker())
# What the provider's messages say when the step itself is done for: botocore's waiter on a
# failure acceptor (deferrable), EmrBaseSensor.poke on a failed state, async_wait giving up.
STEP_ENDED = (
    "waiter encountered a terminal failure state",
    "emr job failed",
    "max attempts reached",
)
# botocore's ClientError text, kept by every message the deferral path builds from it.
AWS_ERROR_CODE = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)")
HTTP_STATUS = re.compile(r"'HTTPStatusCode': (\d{3})")


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


def aws_error_in(message: str) -> ClientError | None:
    """The AWS error a deferral message names, as botocore would have raised it."""
    code = AWS_ERROR_CODE.search(message)
    if code is None:
        return None
    status = HTTP_STATUS.search(message)
    response = {"Error": {"Code": code.group(1)}, "ResponseMetadata": {}}
    if status:
        response["ResponseMetadata"]["HTTPStatusCode"] = int(status.group(1))
    return ClientError(response, "DescribeStep")


def decide(error: BaseException) -> RetryDecision:
    if isinstance(error, (ClientError, BotoCoreError)):  # raised in the worker (poke mode)
        aws_error: BaseException | None = error
    elif isinstance(error, TaskDeferralError):
        return RetryDecision.retry(reason=f"the watcher's trigger failed ({error}): poll again")
    elif any(sign in str(error).lower() for sign in STEP_ENDED):
        return RetryDecision.fail(reason=f"the step ended: {error}")
    else:
        aws_error = aws_error_in(str(error))
    if aws_error is None:
        return RetryDecision.default()
    if is_transient(aws_error):
        return RetryDecision.retry(reason=f"transient AWS error: {error}")
    return RetryDecision.fail(reason=f"not a transient AWS error: {error}")


class TransientAwsErrors(RetryPolicy):
    def evaluate(self, exception, try_number, max_tries, context=None) -> RetryDecision:
        return decide(exception)


RETRY_TRANSIENT_AWS_ERRORS = TransientAwsErrors()


class OnlyTransientAwsErrors(RetryPolicy):
    def evaluate(self, exception, try_number, max_tries, context=None) -> RetryDecision:
        decision = decide(exception)
        if decision.action is RetryAction.DEFAULT:
            return RetryDecision.fail(reason=f"not a transient AWS error: {exception}")
        return decision


RETRY_ONLY_TRANSIENT_AWS_ERRORS = OnlyTransientAwsErrors()
