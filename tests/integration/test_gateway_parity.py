"""Cloud parity seen through real boto3, a real moto S3 server and the real Triton: the
container's error body verbatim, one 60 s-style deadline per request, the MME timeout wording,
members an MME refuses, endpoint labels, utilisation and CloudWatch-style lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from mme_local.background import RunningEmulator, run_in_thread
from mme_local.cloudwatch import CloudWatchFile
from mme_local.runtime.utilisation import UtilisationSampler
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body

pytestmark = pytest.mark.integration

DEADLINE_S = 4.0


def _upload(running: RunningEmulator, path: Path) -> str:
    running.s3_client().upload_file(
        str(path), running.model_data.bucket, running.model_data.prefix + path.name
    )
    return path.name


def _error(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    settings = EmulatorSettings(
        port=0,
        cache_dir=tmp_path_factory.mktemp("cache") / "models",
        invoke_timeout_s=DEADLINE_S,
        model_ready_timeout_s=30.0,
    )
    with run_in_thread(settings) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


def _invoke(running: RunningEmulator, target: str, values: list[float], **extra: Any) -> Any:
    return running.runtime_client().invoke_endpoint(
        EndpointName="local-mme", TargetModel=target, Body=kserve_body(values), **extra
    )


def _warm(running: RunningEmulator, target: str) -> None:
    """A cold load can use up most of the short deadline; ask again until the model answers."""
    for _ in range(10):
        try:
            _invoke(running, target, [1.0])
            return
        except ClientError:
            time.sleep(1.0)
    _invoke(running, target, [1.0])


def test_model_error_quotes_the_containers_body_verbatim(
    running: RunningEmulator, artifacts: Path
) -> None:
    client = running.runtime_client()
    target = _upload(running, doubler_archive(artifacts, "verbatim.tar.gz"))
    _warm(running, target)
    bad_input = b'{"inputs":[{"name":"nope","shape":[1],"datatype":"FP32","data":[1]}]}'
    error = _error(
        lambda: client.invoke_endpoint(EndpointName="local-mme", TargetModel=target, Body=bad_input)
    )
    original = error.response["OriginalMessage"]
    assert "nope" in json.loads(original)["error"], "Triton's whole JSON body, not one field"
    assert f'with message "{original}"' in error.response["Error"]["Message"]


def test_a_load_longer_than_the_deadline_answers_within_it(
    running: RunningEmulator, artifacts: Path
) -> None:
    target = _upload(running, doubler_archive(artifacts, "slow-load.tar.gz", load_delay_s=12.0))
    started = time.monotonic()
    error = _error(lambda: _invoke(running, target, [1.0]))
    elapsed = time.monotonic() - started
    assert error.response["Error"]["Code"] == "ModelNotReadyException"
    assert elapsed < DEADLINE_S + 4.0, "the wait stops at the request's deadline, not at 30 s"


def test_a_model_slower_than_the_deadline_gets_the_mme_timeout_words(
    running: RunningEmulator, artifacts: Path
) -> None:
    target = _upload(running, doubler_archive(artifacts, "slow-model.tar.gz"))
    _warm(running, target)
    started = time.monotonic()
    error = _error(lambda: _invoke(running, target, [-(DEADLINE_S + 4.0)]))
    elapsed = time.monotonic() - started
    assert error.response["Error"]["Code"] == "ModelError"
    assert error.response["OriginalStatusCode"] == 0
    assert error.response["Error"]["Message"].startswith(
        'Received server error (0) from model with message "Your invocation timed out while '
        "waiting for a response from container model."
    )
    assert elapsed < DEADLINE_S + 3.0


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("InferenceComponentName", "ic-1"),
        ("TargetContainerHostname", "second"),
        ("EnableExplanations", "`true`"),
        ("SessionId", "bad_session"),
        ("InferenceId", "id\twith-a-tab"),
    ],
)
def test_members_an_mme_refuses(running: RunningEmulator, member: str, value: str) -> None:
    error = _error(lambda: _invoke(running, "never-loaded.tar.gz", [1.0], **{member: value}))
    assert error.response["Error"]["Code"] == "ValidationError"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_session_id_reaches_the_container(running: RunningEmulator, artifacts: Path) -> None:
    target = _upload(running, doubler_archive(artifacts, "session.tar.gz"))
    _warm(running, target)
    response = _invoke(running, target, [1.0], SessionId="NEW_SESSION")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "NewSessionId" not in response, "Triton opens no session, so none is reported"


def test_metrics_utilisation_and_cloudwatch_lines(
    running: RunningEmulator, artifacts: Path, tmp_path: Path
) -> None:
    text = httpx.get(f"{running.url}/metrics").text
    assert 'mme_invocations_total{endpoint_name="local-mme",variant_name="AllTraffic"}' in text
    emulator = running.emulator
    assert emulator.server is not None
    server = emulator.server
    sampler = UtilisationSampler(
        emulator.metrics, lambda: [server.process_ids()], emulator.cache_dir
    )
    lines = CloudWatchFile(emulator.metrics, tmp_path / "cloudwatch.jsonl")
    sampler.sample()
    target = _upload(running, doubler_archive(artifacts, "utilisation.tar.gz"))
    _warm(running, target)
    for _ in range(5):
        _invoke(running, target, [1.0])
    measured = sampler.sample()
    assert measured.cpu_percent > 0.0, "Triton's processes did work between the two samples"
    assert 0.0 < measured.memory_percent < 100.0
    assert 0.0 < measured.disk_percent <= 100.0
    assert lines.flush() > 0
    records = {
        r["MetricData"][0]["MetricName"]: r["MetricData"][0]
        for r in map(json.loads, (tmp_path / "cloudwatch.jsonl").read_text().splitlines())
    }
    assert records["Invocations"]["StatisticValues"]["Sum"] >= 5
    assert records["CPUUtilization"]["Value"] == measured.cpu_percent
    assert records["ModelLatency"]["Unit"] == "Microseconds"
    assert {"Name": "EndpointName", "Value": "local-mme"} in records["Invocations"]["Dimensions"]


def test_streaming_and_async_calls_raise_boto3s_usual_client_error(
    running: RunningEmulator,
) -> None:
    client = running.runtime_client()
    streamed = _error(
        lambda: client.invoke_endpoint_with_response_stream(
            EndpointName="local-mme", Body=b"{}", ContentType="application/json"
        )
    )
    assert streamed.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpointWithResponseStream" in streamed.response["Error"]["Message"]
    queued = _error(
        lambda: client.invoke_endpoint_async(
            EndpointName="local-mme", InputLocation="s3://mme-local/in.json"
        )
    )
    assert queued.response["Error"]["Code"] == "ValidationError"
    assert queued.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "InvokeEndpointAsync" in queued.response["Error"]["Message"]


def test_a_prefix_aware_id_is_accepted(running: RunningEmulator, artifacts: Path) -> None:
    target = _upload(running, doubler_archive(artifacts, "prefix-aware.tar.gz"))
    _warm(running, target)
    response = _invoke(running, target, [1.0], PrefixAwareId="app-1")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_long_container_error_is_cut_to_the_message_shape(
    running: RunningEmulator, artifacts: Path
) -> None:
    client = running.runtime_client()
    target = _upload(running, doubler_archive(artifacts, "long-error.tar.gz"))
    _warm(running, target)
    name = "n" * 3000  # Triton's error names the unknown input, so its body passes 2048
    bad_input = json.dumps(
        {"inputs": [{"name": name, "shape": [1], "datatype": "FP32", "data": [1]}]}
    ).encode()
    error = _error(
        lambda: client.invoke_endpoint(EndpointName="local-mme", TargetModel=target, Body=bad_input)
    )
    original = error.response["OriginalMessage"]
    assert len(original) == 2048
    assert original.endswith(" more characters in the mme-local log]")
    assert len(error.response["Error"]["Message"]) <= 2048
    assert error.response["Error"]["Message"].endswith("for more information.")
