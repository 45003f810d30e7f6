"""Calling a real endpoint: the runtime client, a smoke request and a snippet for users."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cloud.aws import make_client, make_session
from cloud.errors import InvalidDeployInput
from cloud.plan import AwsCall
from mme_local.artifacts.lint import top_level_config

SMOKE_CONTENT_TYPE = "application/json"


def runtime_client(
    region: str | None = None, profile: str | None = None, endpoint_url: str | None = None
) -> Any:
    """A sagemaker-runtime client for a real endpoint (or, with endpoint_url, any look-alike).

    Standard retries and a 70 s read timeout, as AWS advises for InvokeEndpoint.
    """
    session = make_session(region, profile)
    client = make_client(session, "sagemaker-runtime")
    if endpoint_url is None:
        return client
    return session.client("sagemaker-runtime", endpoint_url=endpoint_url, config=client.meta.config)


def zeros_request(archive: Path) -> bytes:
    """A KServe-v2 JSON body of zeros shaped by the archive's config (-1 dims become 1)."""
    config = top_level_config(archive)
    if config is None or not config.input:
        raise InvalidDeployInput(
            f"cannot build a smoke request from {archive.name} (no clean config with inputs): "
            "pass --smoke-body FILE"
        )
    from tritonclient.grpc import model_config_pb2

    inputs = []
    for tensor in config.input:
        shape = [max(int(d), 1) for d in tensor.dims]
        if config.max_batch_size > 0:
            shape.insert(0, 1)
        datatype = model_config_pb2.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        datatype = {"STRING": "BYTES"}.get(datatype, datatype)
        zero: object = {"BYTES": "", "BOOL": False}.get(datatype, 0)
        count = math.prod(shape)
        inputs.append(
            {"name": tensor.name, "shape": shape, "datatype": datatype, "data": [zero] * count}
        )
    return json.dumps({"inputs": inputs}).encode()


def smoke_call(endpoint_name: str, target_model: str, body: bytes) -> AwsCall:
    return AwsCall(
        "sagemaker-runtime",
        "InvokeEndpoint",
        {
            "EndpointName": endpoint_name,
            "TargetModel": target_model,
            "ContentType": SMOKE_CONTENT_TYPE,
            "Body": body,
        },
    )


def boto3_snippet(endpoint_name: str, region: str, target_model: str) -> str:
    return "\n".join(
        [
            "import boto3, json",
            f'runtime = boto3.client("sagemaker-runtime", region_name="{region}")',
            "response = runtime.invoke_endpoint(",
            f'    EndpointName="{endpoint_name}",',
            f'    TargetModel="{target_model}",',
            '    ContentType="application/octet-stream",',
            '    Body=json.dumps(payload),  # KServe v2 JSON: {"inputs": [...]}',
            ")",
            'print(json.loads(response["Body"].read()))',
        ]
    )
