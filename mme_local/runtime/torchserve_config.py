"""How TorchServe is configured on a SageMaker multi-model endpoint, and the same locally.

On SageMaker the PyTorch inference DLC's toolkit (sagemaker-pytorch-inference 2.0.25 in the
2.6 images, TorchServe 0.12.0) writes a `config.properties` from its packaged
`mme-ts.properties` plus a few keys read from the container's `Environment`, then starts
TorchServe with `enable_envvars_config=true`, so `TS_<KEY>` variables override the file.

One `TorchServeSettings` produces the cloud `Environment` (`sagemaker_environment`); the local
server writes the file the toolkit would write for that same `Environment`
(`toolkit_properties`), changes only what must differ on a shared machine
(`local_properties`), and gets the same `TS_*` variables, so what ran locally is what deploys.

The packaged file ends without a newline, so the first key the toolkit appends lands on
`enable_model_api`'s line (`enable_model_api=truedefault_response_timeout=60`): the model API
is then off (POST /models answers 405) and the response timeout is lost. The `Environment`
therefore sets both again as `TS_*` variables, which TorchServe reads over the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MiB = 1024 * 1024

TORCHSERVE_VERSION = "0.12.0"
TOOLKIT_VERSION = "2.0.25"

# sagemaker-pytorch-inference 2.0.25, src/sagemaker_pytorch_serving_container/etc/
# mme-ts.properties, byte for byte (no newline at the end).
TOOLKIT_MME_PROPERTIES = (
    "vmargs=-XX:-UseContainerSupport\n"
    "enable_envvars_config=true\n"
    "model_store=/\n"
    "default_service_handler=$$SAGEMAKER_HANDLER$$\n"
    "default_workers_per_model=1\n"
    "async_logging=true\n"
    "decode_input_request=false\n"
    "disable_token_authorization=true\n"
    "enable_model_api=true"
)
TOOLKIT_HANDLER_SERVICE = "sagemaker_pytorch_serving_container.handler_service"
SAGEMAKER_PORT = 8080

# Keys whose value is necessarily local, each with its reason (the README lists the same).
LOCAL_ONLY = {
    "inference_address": "loopback and a free port instead of 0.0.0.0:8080",
    "management_address": "loopback and a free port instead of 0.0.0.0:8080",
    "metrics_address": "loopback and a free port, so two servers on one machine don't collide",
    "grpc_inference_address": "loopback; TorchServe opens gRPC ports whatever the config says",
    "grpc_inference_port": "a free port, so two servers on one machine don't collide",
    "grpc_management_address": "loopback",
    "grpc_management_port": "a free port, so two servers on one machine don't collide",
    "install_py_dep_per_model": "off: installing a model's requirements.txt needs a network",
    "default_service_handler": (
        "the toolkit's default handler exists only in the DLC; packaged archives name their own"
    ),
}


@dataclass(frozen=True)
class TorchServeSettings:
    """How TorchServe is started: the knobs the toolkit reads, and local process limits."""

    port: int | None = None
    """Inference and management port; None picks a free loopback port."""
    workers_per_model: int = 1
    """SAGEMAKER_MODEL_SERVER_WORKERS: worker processes per model (each its own Python)."""
    response_timeout_s: int = 60
    """SAGEMAKER_MODEL_SERVER_TIMEOUT: seconds a worker may take for one answer."""
    heap_bytes: int = 1024 * MiB
    """-Xmx of the local JVM; without it the heap is sized from the whole machine."""
    startup_timeout_s: float = 120.0
    stop_grace_s: float = 15.0


def sagemaker_environment(settings: TorchServeSettings) -> dict[str, str]:
    """The container `Environment` that makes the toolkit start TorchServe as mme-local does."""
    return {
        "SAGEMAKER_MULTI_MODEL": "true",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(settings.workers_per_model),
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(settings.response_timeout_s),
        # Repairs what the toolkit's missing newline breaks (see the module docstring).
        "TS_ENABLE_MODEL_API": "true",
        "TS_DISABLE_TOKEN_AUTHORIZATION": "true",
        "TS_DEFAULT_RESPONSE_TIMEOUT": str(settings.response_timeout_s),
    }


def toolkit_properties(environment: Mapping[str, str]) -> str:
    """The `config.properties` text the toolkit writes on an MME for this `Environment`
    (`torchserve._generate_ts_config_properties`, with SageMaker's port variables)."""
    port = environment.get("SAGEMAKER_BIND_TO_PORT", str(SAGEMAKER_PORT))
    user_defined = {
        "default_response_timeout": environment.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60"),
        "default_workers_per_model": environment.get("SAGEMAKER_MODEL_SERVER_WORKERS", ""),
        "inference_address": f"http://0.0.0.0:{port}",
        "management_address": f"http://0.0.0.0:{port}",
        "default_service_handler": TOOLKIT_HANDLER_SERVICE + ":handle",
    }
    appended = "".join(f"{key}={value}\n" for key, value in user_defined.items() if value)
    return TOOLKIT_MME_PROPERTIES + appended


def parse_properties(text: str) -> dict[str, str]:
    """`key=value` lines as TorchServe's launcher and java.util.Properties read these files."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def effective_properties(
    properties: Mapping[str, str], environment: Mapping[str, str]
) -> dict[str, str]:
    """What TorchServe runs with: the file, then `TS_<KEY>` variables over it when
    `enable_envvars_config=true` (TorchServe's ConfigManager)."""
    values = dict(properties)
    if values.get("enable_envvars_config", "").lower() == "true":
        for name, value in environment.items():
            if name.startswith("TS_"):
                values[name[3:].lower()] = value
    return values


@dataclass(frozen=True)
class LocalPorts:
    http: int
    metrics: int
    grpc_inference: int
    grpc_management: int


def local_properties(environment: Mapping[str, str], ports: LocalPorts) -> dict[str, str]:
    """The toolkit's file for `environment`, with only the keys in LOCAL_ONLY changed."""
    values = parse_properties(toolkit_properties(environment))
    values.pop("default_service_handler", None)
    values.update(
        {
            "inference_address": f"http://127.0.0.1:{ports.http}",
            "management_address": f"http://127.0.0.1:{ports.http}",
            "metrics_address": f"http://127.0.0.1:{ports.metrics}",
            "grpc_inference_address": "127.0.0.1",
            "grpc_inference_port": str(ports.grpc_inference),
            "grpc_management_address": "127.0.0.1",
            "grpc_management_port": str(ports.grpc_management),
            "install_py_dep_per_model": "false",
        }
    )
    return values


def render_properties(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def jvm_arguments(settings: TorchServeSettings, properties: Mapping[str, str]) -> list[str]:
    """The `vmargs` the launcher would add, and a heap limit of our own."""
    return [*properties.get("vmargs", "").split(), f"-Xmx{max(settings.heap_bytes // MiB, 64)}m"]
