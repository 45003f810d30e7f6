"""How the SageMaker Triton image's `serve` script turns its environment into tritonserver flags.

Recorded as data, not code from the script: triton-inference-server/server
`docker/sagemaker/serve`, read at the repository's HEAD of 2026-08 (the variables up to
SAGEMAKER_TRITON_MODEL_LOAD_GPU_LIMIT, the defaults and the final command line were also
checked against the script at commit 12cd9a4391fa530a79519fae057f5e0694fb7974). `serve_argv`
replays the recorded rules so a test can compare what the cloud container will run with what
ran locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SOURCE = (
    "triton-inference-server/server docker/sagemaker/serve at HEAD of 2026-08 "
    "(checked against 12cd9a4391fa530a79519fae057f5e0694fb7974)"
)

# Always on the command line, whatever the environment says.
FIXED_FLAGS = (
    "--allow-sagemaker=true",
    "--allow-http=false",
    "--model-control-mode=explicit",
)

MULTI_MODEL_REPOSITORY = "/tmp/sagemaker"
SINGLE_MODEL_REPOSITORY = "/opt/ml/model/"

# tritonserver reads this variable itself (src/sagemaker_server.h) with this default; `serve`
# computes a value for it (`live` for MME) in a shell variable that it never exports.
PING_MODE_VARIABLE = "SAGEMAKER_TRITON_PING_MODE"
TRITONSERVER_PING_MODE_DEFAULT = "ready"


@dataclass(frozen=True)
class Rule:
    variable: str
    flag: str
    """`--name=` prefix the value is appended to."""
    default: str | None = None
    """The value `serve` uses when the variable is unset; None: no flag at all."""


RULES: tuple[Rule, ...] = (
    Rule("SAGEMAKER_BIND_TO_PORT", "--sagemaker-port="),
    Rule("SAGEMAKER_SAFE_PORT_RANGE", "--sagemaker-safe-port-range="),
    Rule("SAGEMAKER_TRITON_ALLOW_GRPC", "--allow-grpc="),
    Rule("SAGEMAKER_TRITON_ALLOW_METRICS", "--allow-metrics="),
    Rule("SAGEMAKER_TRITON_METRICS_PORT", "--metrics-port="),
    Rule("SAGEMAKER_TRITON_GRPC_PORT", "--grpc-port="),
    Rule("SAGEMAKER_TRITON_BUFFER_MANAGER_THREAD_COUNT", "--buffer-manager-thread-count="),
    Rule("SAGEMAKER_TRITON_THREAD_COUNT", "--sagemaker-thread-count="),
    Rule("SAGEMAKER_TRITON_LOG_VERBOSE", "--log-verbose=", default="true"),
    Rule("SAGEMAKER_TRITON_LOG_INFO", "--log-info="),
    Rule("SAGEMAKER_TRITON_LOG_WARNING", "--log-warning="),
    Rule("SAGEMAKER_TRITON_LOG_ERROR", "--log-error="),
    Rule(
        "SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE",
        "--backend-config=python,shm-default-byte-size=",
        default="16777216",
    ),
    Rule(
        "SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE",
        "--backend-config=python,shm-growth-byte-size=",
        default="1048576",
    ),
    Rule("SAGEMAKER_TRITON_TENSORFLOW_VERSION", "--backend-config=tensorflow,version="),
)


def serve_argv(environment: Mapping[str, str], gpu_count: int = 1) -> list[str]:
    """The tritonserver arguments `serve` builds from `environment` (the platform's and ours).

    Follows the recorded order: fixed flags, repository, namespacing, one flag per set
    variable (or its default), a GPU limit per GPU, then the additional arguments split at
    white space as the shell does.
    """
    multi_model = environment.get("SAGEMAKER_MULTI_MODEL") == "true"
    repository = MULTI_MODEL_REPOSITORY if multi_model else SINGLE_MODEL_REPOSITORY
    argv = [*FIXED_FLAGS, f"--model-repository={repository}"]
    namespacing = environment.get("SAGEMAKER_TRITON_DISABLE_MODEL_NAMESPACING")
    argv.append(f"--model-namespacing={namespacing or 'true'}")
    for rule in RULES:
        value = environment.get(rule.variable) or rule.default
        if value is not None:
            argv.append(f"{rule.flag}{value}")
    gpu_limit = environment.get("SAGEMAKER_TRITON_MODEL_LOAD_GPU_LIMIT")
    if gpu_limit:
        for index in range(gpu_count):
            argv += ["--model-load-gpu-limit", f"{index}:{gpu_limit}"]
    argv += environment.get("SAGEMAKER_TRITON_ADDITIONAL_ARGS", "").split()
    return argv


def ping_mode(environment: Mapping[str, str]) -> str:
    """The ping mode tritonserver runs with: only an exported variable reaches it."""
    return environment.get(PING_MODE_VARIABLE) or TRITONSERVER_PING_MODE_DEFAULT
