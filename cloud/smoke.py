"""The deploy's smoke invocation, patient with a model's first load.

A cold model answers ModelNotReadyException (429) while SageMaker downloads and loads it; the
smoke call retries that with backoff for up to SMOKE_BUDGET_S, the longest first load it waits
for, and fails on any other error at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from cloud.aws import error_code, explain
from cloud.errors import AwsCallFailed
from cloud.plan import AwsCall

SMOKE_BUDGET_S = 600.0
"""Ten minutes: a large model's first download and load on a fresh instance."""
FIRST_DELAY_S = 2.0
MAX_DELAY_S = 30.0


def invoke_when_ready(
    runtime: Any,
    call: AwsCall,
    say: Callable[[str], None] = lambda _: None,
    budget_s: float = SMOKE_BUDGET_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The smoke call's answer body; retries ModelNotReadyException, doubling the delay."""
    started = clock()
    delay = FIRST_DELAY_S
    attempt = 1
    while True:
        try:
            answer = runtime.invoke_endpoint(**call.params)
            body: bytes = answer["Body"].read()
            return body
        except ClientError as error:
            waited = clock() - started
            if error_code(error) != "ModelNotReadyException":
                raise explain("sagemaker-runtime InvokeEndpoint", error) from error
            if waited + delay > budget_s:
                raise AwsCallFailed(
                    f"smoke test: {call.params['TargetModel']} was still loading after "
                    f"{waited:.0f} s ({attempt} attempts); the endpoint is up: invoke it again "
                    "later, or check the model's load time in CloudWatch logs"
                ) from error
            say(
                f"smoke test: {call.params['TargetModel']} is loading (attempt {attempt}, "
                f"{waited:.0f} s); retrying in {delay:.0f} s"
            )
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
            attempt += 1
