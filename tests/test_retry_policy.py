"""The step watchers' retry policy, fed the exceptions Airflow 3.3.2 and the Amazon provider
9.39 really raise, in deferrable mode (the DAG's default) and in poke mode.

How a deferrable EmrStepSensor's error reaches `retry_policy` (installed sources):
- airflow/providers/amazon/aws/triggers/base.py `AwsBaseWaiterTrigger.run`: the aiobotocore
  waiter runs in `async_wait` (amazon/aws/utils/waiter_with_logging.py), which retries in place
  the codes of its RETRIABLE_ERROR_CODES and raises `AirflowException` for a terminal state or
  any other AWS error; the trigger turns that into `TriggerEvent({"status": "error", "message":
  str(error), ...})` (`_event_from_exception`);
- airflow/providers/amazon/aws/sensors/emr.py `EmrStepSensor.execute_complete` raises
  `AirflowException(f"Error while running job: {event}")`;
- an exception the trigger does not catch (aiobotocore's EndpointConnectionError) fails the
  trigger: airflow/models/trigger.py `Trigger.submit_failure` reschedules the task with
  `next_method="__fail__"`, and airflow/sdk/bases/operator.py `BaseOperator.resume_execution`
  raises `TaskDeferralError("Trigger failure")`;
- airflow/sdk/execution_time/task_runner.py `_handle_current_task_failed` gives the exception to
  the task's `retry_policy`: FAIL cancels the retries left, DEFAULT keeps them.
Here the real trigger runs over a stubbed aiobotocore client (aiobotocore.stub.AioStubber):
DescribeStep answers as EMR would (botocore's emr service model: InternalServerException is a
500, AccessDenied a 400).
"""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiobotocore.session import get_session
from aiobotocore.stub import AioStubber
from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.definitions.retry_policy import RetryAction
from botocore.exceptions import ClientError, EndpointConnectionError

from fruits.retry import RETRY_TRANSIENT_AWS_ERRORS

pytestmark = pytest.mark.unit

CLUSTER, STEP, REGION = "j-1ABCDEFGHIJKL", "s-1ABCDEFGHIJKL", "eu-west-1"


def decision(error: BaseException) -> RetryAction:
    return RETRY_TRANSIENT_AWS_ERRORS.evaluate(error, try_number=1, max_tries=3).action


def sensor() -> EmrStepSensor:
    return EmrStepSensor(
        task_id="watch_featurize_step",
        job_flow_id=CLUSTER,
        step_id=STEP,
        deferrable=True,
        aws_conn_id=None,
        region_name=REGION,
    )


def step_answer(state: str) -> dict:
    status = {"State": state, "StateChangeReason": {}, "Timeline": {}}
    if state == "FAILED":
        status["FailureDetails"] = {"Reason": "Unknown Error.", "Message": "ValueError: broke"}
    return {
        "Step": {"Id": STEP, "Name": "featurize", "Status": status},
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


def deferred_error(stub) -> BaseException:
    """Run the sensor's own trigger with DescribeStep answered by `stub(stubber)`, then resume
    the sensor as the task runner does: the exception the retry policy receives."""
    trigger = trigger_of(sensor())

    async def run_trigger():
        client = get_session().create_client(
            "emr", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
        )
        async with client as emr:
            with AioStubber(emr) as stubber:
                stub(stubber, emr)

                async def async_conn(_hook):
                    return nullcontext_async(emr)

                with mock.patch.object(EmrHook, "get_async_conn", async_conn):
                    return [event async for event in trigger.run()]

    try:
        events = asyncio.run(run_trigger())
    except Exception as crash:  # the trigger failed: Trigger.submit_failure -> "__fail__"
        kwargs = {"error": TriggerFailureReason.TRIGGER_FAILURE, "traceback": [repr(crash)]}
        return raised(lambda: sensor().resume_execution(TRIGGER_FAIL_REPR, kwargs, {}))
    (event,) = events
    return raised(
        lambda: sensor().resume_execution("execute_complete", {"event": event.payload}, {})
    )


def trigger_of(watcher: EmrStepSensor) -> EmrStepSensorTrigger:
    """The trigger EmrStepSensor.execute defers to, with its arguments (one poll)."""
    return EmrStepSensorTrigger(
        job_flow_id=watcher.job_flow_id,
        step_id=watcher.step_id,
        waiter_delay=0,
        waiter_max_attempts=1,
        aws_conn_id=watcher.aws_conn_id,
        region_name=watcher.region_name,
    )


class nullcontext_async:  # noqa: N801 (what `async with await hook.get_async_conn()` enters)
    def __init__(self, client):
        self.client = client

    async def __aenter__(self):
        return self.client

    async def __aexit__(self, *exc):
        return False


def raised(call) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def answers(state: str):
    return lambda stubber, _: stubber.add_response("describe_step", step_answer(state))


def fails_with(code: str, status: int):
    return lambda stubber, _: stubber.add_client_error(
        "describe_step", service_error_code=code, service_message="x", http_status_code=status
    )


def drops_connection(_stubber, emr):
    emr._make_api_call = mock.AsyncMock(side_effect=EndpointConnectionError(endpoint_url="e"))


def test_a_failed_step_is_final_in_deferrable_mode():
    error = deferred_error(answers("FAILED"))
    assert "Error while running job" in str(error)  # execute_complete's AirflowException
    assert decision(error) == RetryAction.FAIL


def test_a_transient_aws_error_after_deferral_is_retried():
    """EMR's InternalServerException (HTTP 500) is not in the provider's RETRIABLE_ERROR_CODES:
    it leaves the trigger as an error event, then an AirflowException naming the code."""
    error = deferred_error(fails_with("InternalServerException", 500))
    assert "InternalServerException" in str(error)
    assert decision(error) == RetryAction.RETRY


def test_access_denied_after_deferral_is_final():
    error = deferred_error(fails_with("AccessDeniedException", 400))
    assert decision(error) == RetryAction.FAIL


def test_a_trigger_that_lost_its_connection_is_retried():
    error = deferred_error(drops_connection)
    assert type(error).__name__ == "TaskDeferralError"
    assert decision(error) == RetryAction.RETRY


def test_a_deferral_timeout_never_reaches_the_policy():
    """BaseSensorOperator.resume_execution (airflow/sdk/bases/sensor.py) turns the deferral
    timeout into AirflowSensorTimeout, which the task runner fails without asking the policy
    (RetryPolicy.evaluate's note): a watcher out of time is final whatever the policy says."""
    kwargs = {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    error = raised(lambda: sensor().resume_execution(TRIGGER_FAIL_REPR, kwargs, {}))
    assert type(error).__name__ == "AirflowSensorTimeout"


def test_poke_mode_errors_are_judged_alike():
    """Poke mode: EmrBaseSensor.poke raises "EMR job failed" for a failed step, and botocore's
    ClientError itself when DescribeStep fails (sensors/emr.py)."""
    watcher = sensor()
    with mock.patch.object(EmrStepSensor, "get_emr_response", return_value=step_answer("FAILED")):
        assert decision(raised(lambda: watcher.poke({}))) == RetryAction.FAIL
    throttled = {"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {}}
    assert decision(ClientError(throttled, "DescribeStep")) == RetryAction.RETRY
    assert decision(EndpointConnectionError(endpoint_url="e")) == RetryAction.RETRY


def test_an_error_the_policy_does_not_know_keeps_the_default_retries():
    assert decision(ValueError("something else")) == RetryAction.DEFAULT


# --- the local platform's jobs -------------------------------------------------------------------


def local_decision(error: BaseException) -> RetryAction:
    from fruits.retry import RETRY_ONLY_TRANSIENT_AWS_ERRORS

    return RETRY_ONLY_TRANSIENT_AWS_ERRORS.evaluate(error, try_number=1, max_tries=3).action


class ExitedWith:
    """What subprocess.Popen gives local_platform.spark_submit: a job that printed and exited."""

    def __init__(self, code: int):
        self.code, self.returncode = code, None
        self.stdout = iter(["Traceback (most recent call last):\n", "ValueError: broke\n"])

    def wait(self) -> int:
        self.returncode = self.code
        return self.code


def test_a_failed_local_spark_job_is_not_retried(monkeypatch, parsed_dag):
    """A Spark job that exited non-zero fails again on the same inputs and code: final, as a
    failed EMR step (its add task has retries=0) and a failed Databricks run are. Before, the
    DAG's default retries ran it twice more. An S3 error while staging that botocore calls
    transient is retried; AccessDenied is not."""
    from fruits import local_platform
    from fruits.retry import RETRY_ONLY_TRANSIENT_AWS_ERRORS

    for name in ("featurize", "pca", "classify"):
        task = parsed_dag.get_task(f"local.run_{name}_locally")
        assert task.retry_policy is RETRY_ONLY_TRANSIENT_AWS_ERRORS

    monkeypatch.setattr(local_platform.subprocess, "Popen", lambda *a, **k: ExitedWith(1))
    failed = raised(lambda: local_platform.spark_submit(["spark-submit", "x.py"], print, "pca"))
    assert "spark job pca failed (exit 1)" in str(failed)
    assert local_decision(failed) == RetryAction.FAIL
    assert (
        local_decision(FileNotFoundError("nothing under s3://lake/landing/D")) == RetryAction.FAIL
    )

    slow_down = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}
    assert local_decision(ClientError(slow_down, "GetObject")) == RetryAction.RETRY
    assert local_decision(EndpointConnectionError(endpoint_url="e")) == RetryAction.RETRY
    denied = {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
    assert local_decision(ClientError(denied, "GetObject")) == RetryAction.FAIL
