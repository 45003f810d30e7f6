"""SageMaker SDK v2 and v3 and boto3's `sagemaker` client against a running endpoint.

The SDK scripts run in child processes whose only configuration is the environment
(`AWS_ENDPOINT_URL_SAGEMAKER`, `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`, region, any credentials):
the zero-code-change path the README documents. SDK v3 (`sagemaker>=3`) is in the dev extra;
SDK v2 cannot share the project's environment (it needs sagemaker-core 1.x), so it gets its own
virtual environment, made once and kept in pytest's cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from mme_local.background import RunningEmulator, run_in_thread
from mme_local.clients import LOCAL_CREDENTIALS
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body, kserve_output

pytestmark = pytest.mark.integration

SDK_V2 = "sagemaker>=2.200,<3"
TARGET = "times-3.tar.gz"

SDK_V3_SCRIPT = """
import json
import sys
from sagemaker.core.resources import Endpoint

endpoint = Endpoint.get(sys.argv[1])
response = endpoint.invoke(
    body=sys.argv[3].encode(), target_model=sys.argv[2], content_type="application/octet-stream"
)
body = response.body.read() if hasattr(response.body, "read") else response.body
answer = {"status": endpoint.endpoint_status, "body": body.decode()}
open("answer.json", "w").write(json.dumps(answer))
"""

SDK_V2_SCRIPT = """
import json
import sys
from sagemaker.predictor import Predictor

predictor = Predictor(sys.argv[1])
# DescribeEndpoint until InService; SDK v2 sleeps `poll` seconds before each call.
status = predictor.sagemaker_session.wait_for_endpoint(sys.argv[1], poll=1)["EndpointStatus"]
body = predictor.predict(sys.argv[3].encode(), target_model=sys.argv[2])
open("answer.json", "w").write(json.dumps({"status": status, "body": body.decode()}))
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path_factory.mktemp("cache") / "models")
    with run_in_thread(settings) as emulator:
        artifact = doubler_archive(tmp_path_factory.mktemp("artifacts"), TARGET, 3)
        emulator.s3_client().upload_file(
            str(artifact), emulator.model_data.bucket, emulator.model_data.prefix + TARGET
        )
        yield emulator


def sdk_environment(running: RunningEmulator, tmp_path: Path) -> dict[str, str]:
    """Only what a user would export: no AWS settings from this machine leak in."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(
        AWS_ENDPOINT_URL_SAGEMAKER=running.url,
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=running.url,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return environment


def run_script(
    python: Path | str, script: str, running: RunningEmulator, tmp_path: Path
) -> tuple[str, list[float]]:
    """The endpoint status the SDK read and the doubled values it got back."""
    path = tmp_path / "client.py"
    path.write_text(textwrap.dedent(script))
    args = [str(python), str(path), running.endpoint_name, TARGET, kserve_body([1.0, 2.5]).decode()]
    result = subprocess.run(
        args,
        env=sdk_environment(running, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # A file, not stdout: SDK v2 prints progress dots while it waits.
    answer = json.loads((tmp_path / "answer.json").read_text())
    return answer["status"], kserve_output(answer["body"].encode())


@pytest.fixture(scope="session")
def sdk_v2_python(request: pytest.FixtureRequest) -> Path:
    """A virtual environment holding SDK v2, reused while its requirement is unchanged."""
    folder = Path(request.config.cache.mkdir("sdk-v2-venv"))
    python = folder / "bin" / "python"
    stamp = folder / "installed.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == SDK_V2:
        return python
    venv.EnvBuilder(clear=True, with_pip=True).create(folder)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", SDK_V2],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(f"could not install {SDK_V2} from PyPI: {install.stderr[-2000:]}")
    stamp.write_text(SDK_V2)
    return python


def test_boto3_sagemaker_client_describes_the_local_endpoint(running: RunningEmulator) -> None:
    client = boto3.client(
        "sagemaker", endpoint_url=running.url, region_name="us-east-1", **LOCAL_CREDENTIALS
    )
    endpoint = client.describe_endpoint(EndpointName=running.endpoint_name)
    assert endpoint["EndpointStatus"] == "InService"
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g5.xlarge"
    model = client.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert model["PrimaryContainer"]["ModelDataUrl"] == running.model_data.url()
    assert model["PrimaryContainer"]["Image"].endswith("/sagemaker-tritonserver:24.09-py3")
    listed = client.list_endpoints()["Endpoints"]
    assert [e["EndpointName"] for e in listed] == [running.endpoint_name]
    with pytest.raises(ClientError) as raised:
        client.describe_endpoint(EndpointName="not-there")
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as raised:
        client.delete_endpoint(EndpointName=running.endpoint_name)
    assert raised.value.response["Error"]["Code"] == "NotEmulated"


def test_sdk_v3_endpoint_get_and_invoke_with_only_environment_variables(
    running: RunningEmulator, tmp_path: Path
) -> None:
    assert run_script(sys.executable, SDK_V3_SCRIPT, running, tmp_path) == (
        "InService",
        [3.0, 7.5],
    )


def test_sdk_v2_predictor_predicts_with_only_environment_variables(
    running: RunningEmulator, sdk_v2_python: Path, tmp_path: Path
) -> None:
    assert run_script(sdk_v2_python, SDK_V2_SCRIPT, running, tmp_path) == (
        "InService",
        [3.0, 7.5],
    )
