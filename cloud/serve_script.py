"""How the SageMaker Triton image's `serve` script turns its environment into tritonserver flags.

Recorded as data, not code from the script: triton-inference-server/server
`docker/sagemaker/serve` as of e1db8a603d863b1317ee859bdeea2be19959462e (HEAD of 2026-08-19; the
script last changed in 96e7cb5b4, first released in v2.56.0 / 25.03, which added the
SAGEMAKER_TRITON_INFERENCE_TYPE check; gRPC and metrics have defaulted to off since 2022).
`serve_argv` replays the recorded rules for a multi-model endpoint, `ping_mode` and
`inference_type` what tritonserver then reads from its environment, so a test can compare what
the cloud container will run with what ran locally. Not replayed: the single-model checks of
the model folder (`--load-model`), which depend on the container's disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SOURCE = (
    "triton-inference-server/server docker/sagemaker/serve at "
    "e1db8a603d863b1317ee859bdeea2be19959462e (2026-08-19; last changed in 96e7cb5b4, v2.56.0)"
)

# Always on the command line, whatever the environment says.
FIXED_FLAGS = (
    "--allow-sagemaker=true",
    "--allow-http=false",
    "--model-control-mode=explicit",
)

MULTI_MODEL_REPOSITORY = "/tmp/sagemaker"
SINGLE_MODEL_REPOSITORY = "/opt/ml/model/"

# tritonserver reads this variable itself (src/sagemaker_server.h) with this default. `serve`
# assigns it (the override if set, else `live` for MME, `ready` otherwise) without `export`:
# bash passes the new value on only if the variable came in through the environment.
PING_MODE_VARIABLE = "SAGEMAKER_TRITON_PING_MODE"
PING_MODE_OVERRIDE_VARIABLE = "SAGEMAKER_TRITON_OVERRIDE_PING_MODE"
TRITONSERVER_PING_MODE_DEFAULT = "ready"

# tritonserver reads this one too (default `infer`); `serve` only checks it, and exits 1 on
# any other value.
INFERENCE_TYPE_VARIABLE = "SAGEMAKER_TRITON_INFERENCE_TYPE"
INFERENCE_TYPES = ("infer", "generate", "generate_stream")
TRITONSERVER_INFERENCE_TYPE_DEFAULT = "infer"


class ServeScriptExit(Exception):
    """`serve` would print this and exit 1 instead of starting tritonserver."""


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
    Rule("SAGEMAKER_TRITON_ALLOW_GRPC", "--allow-grpc=", default="false"),
    Rule("SAGEMAKER_TRITON_ALLOW_METRICS", "--allow-metrics=", default="false"),
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
    white space as the shell does. Raises ServeScriptExit where `serve` exits instead.
    """
    requested = environment.get(INFERENCE_TYPE_VARIABLE)
    if requested and requested not in INFERENCE_TYPES:
        raise ServeScriptExit(
            f"ERROR: Invalid {INFERENCE_TYPE_VARIABLE} '{requested}'; "
            f"must be one of: {', '.join(INFERENCE_TYPES)}"
        )
    multi_model = _multi_model(environment)
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


def _multi_model(environment: Mapping[str, str]) -> bool:
    return environment.get("SAGEMAKER_MULTI_MODEL") == "true"


def ping_mode(environment: Mapping[str, str]) -> str:
    """The ping mode tritonserver runs with.

    `serve` assigns SAGEMAKER_TRITON_PING_MODE (SAGEMAKER_TRITON_OVERRIDE_PING_MODE if set,
    else `live` for MME, `ready` otherwise) but never exports it. Bash exports a variable it
    inherited, so the assigned value reaches tritonserver only when the container's environment
    already holds SAGEMAKER_TRITON_PING_MODE (whatever its value); otherwise tritonserver uses
    its default, `ready`, even with the override set.
    """
    if PING_MODE_VARIABLE not in environment:
        return TRITONSERVER_PING_MODE_DEFAULT
    override = environment.get(PING_MODE_OVERRIDE_VARIABLE)
    if override:
        return override
    return "live" if _multi_model(environment) else "ready"


def inference_type(environment: Mapping[str, str]) -> str:
    """What tritonserver's SageMaker front end does with an invocation (`serve` has checked
    the value; see serve_argv)."""
    return environment.get(INFERENCE_TYPE_VARIABLE) or TRITONSERVER_INFERENCE_TYPE_DEFAULT
