"""--require-sigv4 end to end: real boto3 clients, right and wrong keys, a real Triton."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mme_local.background import RunningEmulator, run_in_thread
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body, kserve_output

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIDLOCALTEST", "a-secret-only-the-test-knows"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    settings = EmulatorSettings(
        port=0,
        cache_dir=tmp_path_factory.mktemp("cache") / "models",
        require_sigv4=True,
        access_key_id=KEY,
        secret_access_key=SECRET,
    )
    with run_in_thread(settings) as emulator:
        archive = doubler_archive(tmp_path_factory.mktemp("artifacts"), "times-2.tar.gz", 2)
        emulator.s3_client().upload_file(
            str(archive), emulator.model_data.bucket, emulator.model_data.prefix + archive.name
        )
        yield emulator


def _client(running: RunningEmulator, key: str, secret: str) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=running.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def _invoke(client: Any) -> Any:
    return client.invoke_endpoint(
        EndpointName="local-mme",
        TargetModel="times-2.tar.gz",
        Body=kserve_body([1.5]),
        ContentType="application/octet-stream",
    )


def test_the_configured_key_pair_invokes(running: RunningEmulator) -> None:
    response = _invoke(_client(running, KEY, SECRET))
    assert kserve_output(response["Body"].read()) == [3.0]


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [
        (KEY, "not-the-secret", "InvalidSignatureException"),
        ("AKIDSOMEONEELSE", SECRET, "UnrecognizedClientException"),
    ],
)
def test_other_keys_get_403(running: RunningEmulator, key: str, secret: str, code: str) -> None:
    with pytest.raises(ClientError) as raised:
        _invoke(_client(running, key, secret))
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_ping_stays_open(running: RunningEmulator) -> None:
    import httpx

    assert httpx.get(f"{running.url}/ping").status_code == 200


def test_the_setting_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="MME_LOCAL_SECRET_ACCESS_KEY"):
        EmulatorSettings(require_sigv4=True)
