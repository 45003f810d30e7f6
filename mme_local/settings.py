"""Everything `mme-local up` and `deploy` can be told, as validated models with a docstring under
each field.

Each field says where it lives in `mme.toml` (`toml=(section, key)`); its environment variable
is `MME_LOCAL_<FIELD>` in upper case, without a `_bytes` or `_s` unit suffix.
`config_file.load_settings` fills a model from flags, the environment and the file, in that
order of precedence, and turns the first bad value into one line naming its source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mme_local.artifacts.rules import MAX_ARCHIVE_BYTES
from mme_local.capacity.front_end import unload_blocks_invokes
from mme_local.instances import DEFAULT_INSTANCE_TYPE
from mme_local.instances import instance_type as lookup_instance_type
from mme_local.runtime.base import TritonSettings
from mme_local.runtime.torchserve_config import TorchServeSettings

GiB = 1024**3
DEFAULT_MODEL_DATA_URL = "s3://mme-local/models/"
DEFAULT_DOCKER_IMAGE = "nvcr.io/nvidia/tritonserver:24.09-py3"
# Largest expanded size accepted for one model archive (lint applies the same cap).
DEFAULT_MAX_ARCHIVE_BYTES = MAX_ARCHIVE_BYTES

# Far above what SageMaker's headers need (a SigV4 Authorization is ~300 bytes; custom
# attributes are capped at 1 KiB), far below what a server should buffer for one client.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_CONCURRENCY = 1000

DEFAULT_TRITON_VERSION = "24.09"
"""The SageMaker Triton container `deploy` uses, and `up` imitates, unless told otherwise."""
UNLOAD_BLOCKS_INVOKES = ("auto", "on", "off")

RUNTIMES = ("embedded", "docker", "external")
MAX_LOCAL_INSTANCES = 4
"""Most instances `up --instance-count` runs: each is a Triton process on this machine."""
STACKS = ("triton", "torchserve")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


class InvalidSize(ValueError):
    """Not a size like 16GiB, 512MiB, 2G or 1000000."""


def parse_size(text: str) -> int:
    """'16GiB', '512MiB', '2G', '1000000' -> bytes (KiB, MiB: powers of 1024; K, M: of 1000)."""
    match = _SIZE.match(text)
    if not match:
        raise InvalidSize(f"{text!r} is not a size (examples: 16GiB, 512MiB, 2G, 1000000)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    base = 1024 if "I" in unit else 1000
    exponent = "KMGT".find(unit[:1]) + 1 if unit[:1] in "KMGT" and unit else 0
    return int(number * base**exponent)


def _size(value: Any) -> Any:
    if isinstance(value, str):
        return parse_size(value)
    return value


Size = Annotated[int, BeforeValidator(_size), Field(ge=0)]
"""Bytes, given as an integer or a size string."""


def _toml(section: str, key: str) -> dict[str, Any]:
    return {"toml": (section, key)}


class EndpointFields(BaseModel):
    """The `[endpoint]` section: what `up` and `deploy` share, so local and cloud agree."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    endpoint_name: str = Field("local-mme", json_schema_extra=_toml("endpoint", "name"))
    """The EndpointName clients must use."""
    model_data_url: str = Field(
        DEFAULT_MODEL_DATA_URL, json_schema_extra=_toml("endpoint", "model_data_url")
    )
    """The S3 prefix holding the model.tar.gz objects (ModelDataUrl)."""
    instance_type: str = Field(
        DEFAULT_INSTANCE_TYPE, json_schema_extra=_toml("endpoint", "instance_type")
    )
    """Instance type: the cloud's, and locally the default memory, disk and parallelism budgets."""
    region: str = Field("us-east-1", json_schema_extra=_toml("endpoint", "region"))
    """Region used in ARNs and for the store's clients."""
    stack: Literal["triton", "torchserve"] = Field(
        "triton", json_schema_extra=_toml("endpoint", "stack")
    )
    """The serving stack behind the endpoint: "triton" (NVIDIA Triton) or "torchserve"
    (TorchServe, as the SageMaker PyTorch inference container runs it)."""
    model_cache: Literal["Enabled", "Disabled"] = Field(
        "Enabled", json_schema_extra=_toml("endpoint", "model_cache")
    )
    """MultiModelConfig.ModelCacheSetting: "Disabled" unloads and deletes after each invocation."""
    models_dir: Path | None = Field(None, json_schema_extra=_toml("endpoint", "artifacts"))
    """Upload every *.tar.gz in this folder under the prefix (unchanged ones skipped)."""
    overwrite: bool = False
    """Replace objects whose content changed under an existing name (refused by default:
    instances that loaded the old bytes keep serving them)."""

    @field_validator("stack", mode="before")
    @classmethod
    def _known_stack(cls, value: object) -> object:
        if value not in STACKS:
            raise ValueError(f"unknown stack {value!r}; choose one of: {', '.join(STACKS)}")
        return value

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, value: str) -> str:
        if value:  # empty: not given (deploy then asks for it)
            lookup_instance_type(value, what="")
        return value


class EmulatorSettings(EndpointFields):
    """How one local endpoint runs: `[endpoint]` plus the `[local]` section."""

    host: str = Field("127.0.0.1", json_schema_extra=_toml("local", "host"))
    """Address the gateway listens on; loopback unless told otherwise."""
    port: int = Field(8080, ge=0, le=65535, json_schema_extra=_toml("local", "port"))
    """Gateway port; 0 picks a free one."""
    variant_name: str = "AllTraffic"
    """Returned in x-Amzn-Invoked-Production-Variant."""
    account_id: str = "123456789012"
    """Account id used in error messages and ARNs."""
    s3_endpoint_url: str | None = Field(None, json_schema_extra=_toml("local", "s3_endpoint_url"))
    """An external S3 API (MinIO, AWS, a moto server); None starts an embedded moto server."""
    cache_dir: Path | None = Field(None, json_schema_extra=_toml("local", "cache_dir"))
    """Where artifacts are downloaded and extracted; a temporary folder if None."""
    runtime: Literal["embedded", "docker", "external"] = Field(
        "embedded", json_schema_extra=_toml("local", "runtime")
    )
    """"embedded" (the tritonserver binary), "docker" (NVIDIA's container) or "external"."""
    triton_home: Path | None = Field(None, json_schema_extra=_toml("local", "triton_home"))
    """A Triton installation for the embedded runtime; found or provisioned if None."""
    triton_url: str | None = Field(None, json_schema_extra=_toml("local", "triton_url"))
    """For the external runtime: the URL of Triton's SageMaker front end."""
    triton: TritonSettings = Field(default_factory=TritonSettings)
    """How Triton is started."""
    torchserve: TorchServeSettings = Field(default_factory=TorchServeSettings)
    """How TorchServe is started (with stack "torchserve")."""
    triton_version: str = Field(
        DEFAULT_TRITON_VERSION, json_schema_extra=_toml("deploy", "triton_version")
    )
    """The SageMaker Triton container release (YY.MM) the endpoint imitates: `deploy`'s own
    setting, read from the same key, so the local run behaves like the cloud one."""
    unload_blocks_invokes: Literal["auto", "on", "off"] = Field(
        "auto", json_schema_extra=_toml("local", "unload_blocks_invokes")
    )
    """Play the model-list mutex of Triton's SageMaker front end from 25.11 (2.64): every
    invocation waits while any model unloads. "auto": when `triton_version` is 25.11 or later
    (stack "triton" only); "on"; "off"."""
    docker_image: str = Field(DEFAULT_DOCKER_IMAGE, json_schema_extra=_toml("local", "image"))
    """Image for the docker runtime."""
    docker_gpus: str = Field("all", json_schema_extra=_toml("local", "gpus"))
    """GPUs for the docker runtime: "all", a device index list like "0,1", or "none"."""
    pull: bool = Field(False, json_schema_extra=_toml("local", "pull"))
    """For the docker runtime: pull the image if it is missing."""
    instance_count: int = Field(1, json_schema_extra=_toml("local", "instance_count"))
    """Instances behind the endpoint, each its own model server with its own cache folder and
    the budgets below (as each cloud instance has the instance type's memory); the gateway
    routes among them. Up to MAX_LOCAL_INSTANCES, on the embedded Triton runtime."""
    max_loaded_models: int | None = Field(
        None, ge=1, json_schema_extra=_toml("local", "max_loaded_models")
    )
    """Most models loaded at once (per instance); None means only memory limits it."""
    memory_limit_bytes: Size | None = Field(None, json_schema_extra=_toml("local", "memory_limit"))
    """Host memory budget for Triton and its stubs; None takes the instance type's."""
    gpu_memory_limit_bytes: Size | None = Field(
        None, json_schema_extra=_toml("local", "gpu_memory_limit")
    )
    """GPU memory budget per GPU; None takes the instance type's (only checked with a GPU)."""
    disk_limit_bytes: Size | None = Field(None, json_schema_extra=_toml("local", "disk_limit"))
    """Disk budget for extracted artifacts; None takes the instance type's NVMe storage (none
    for EBS-only types). Free space on the cache's disk always caps an extraction too."""
    max_archive_bytes: Size = DEFAULT_MAX_ARCHIVE_BYTES
    """Largest expanded size accepted for one model archive."""
    model_ready_timeout_s: float = Field(
        60.0, gt=0, json_schema_extra=_toml("local", "model_ready_timeout")
    )
    """A cold request waits this long before answering ModelNotReadyException (429)."""
    model_load_timeout_s: float = Field(360.0, gt=0)
    """How long a download plus load may go on in the background."""
    invoke_timeout_s: float = Field(60.0, gt=0)
    """One deadline per request, as on SageMaker: the wait for a load and the answer share it."""
    max_parallel_downloads: int | None = Field(
        None, ge=1, json_schema_extra=_toml("local", "max_parallel_downloads")
    )
    """Downloads at once; None takes the instance type's vCPUs (SageMaker bounds them by a
    factor of the vCPUs it does not publish)."""
    max_parallel_loads: int | None = Field(
        None, ge=1, json_schema_extra=_toml("local", "max_parallel_loads")
    )
    """Loads at once; None takes the instance type's vCPUs."""
    artifact_check_interval_s: float = Field(
        30.0, ge=0, json_schema_extra=_toml("local", "artifact_check_interval")
    )
    """How often the prefix is listed to notice objects changed under cached models; 0: never."""

    # Fidelity choices where SageMaker's behaviour is unpublished, and CloudWatch-style output.
    model_error_body_limit_bytes: Size = Field(
        64 * 1024, json_schema_extra=_toml("local", "model_error_body_limit")
    )
    """How much of a container's error body the emulator's log keeps; ModelError's Message and
    OriginalMessage quote at most 2048 characters of it, as SageMaker's service model allows."""
    metrics_period_s: float = Field(10.0, gt=0, json_schema_extra=_toml("local", "metrics_period"))
    """How often utilisation is measured and CloudWatch-style lines are written."""
    cloudwatch_file: Path | None = Field(None, json_schema_extra=_toml("local", "cloudwatch_file"))
    """Append the metrics as CloudWatch-style JSON lines to this file; None writes none."""

    # The gateway's HTTP server and who may use it.
    header_limit_bytes: Size = Field(
        DEFAULT_MAX_HEADER_BYTES, gt=0, json_schema_extra=_toml("local", "header_limit")
    )
    """Largest request line plus headers; a bigger request gets 431."""
    max_concurrency: int = Field(
        DEFAULT_MAX_CONCURRENCY, ge=1, json_schema_extra=_toml("local", "max_concurrency")
    )
    """Most requests in progress at once; past it a request gets 503. Idle connections don't
    count: they are closed by the keep-alive and header timeouts instead."""
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, json_schema_extra=_toml("local", "keep_alive_timeout")
    )
    """A connection with no request in progress (new, or kept alive) is closed after this many
    seconds."""
    header_timeout_s: float = Field(10.0, gt=0, json_schema_extra=_toml("local", "header_timeout"))
    """A request's line and headers must arrive within this many seconds of its first byte
    (else 408 and a close); its body may pause, and its client leave the answer unread, no
    longer than this (else a close)."""
    require_sigv4: bool = Field(False, json_schema_extra=_toml("local", "require_sigv4"))
    """Refuse InvokeEndpoint calls not signed (SigV4) with the key pair below."""
    access_key_id: str = Field("local", json_schema_extra=_toml("local", "access_key_id"))
    """The access key id clients sign with when require_sigv4 is on."""
    secret_access_key: str | None = Field(
        None, repr=False, json_schema_extra=_toml("local", "secret_access_key")
    )
    """Its secret; required when require_sigv4 is on."""
    trace_file: Path | None = Field(None, json_schema_extra=_toml("local", "trace"))
    """Append one JSON line per invocation to this file (for `mme-local capacity plan`)."""

    @field_validator("runtime", mode="before")
    @classmethod
    def _known_runtime(cls, value: object) -> object:
        if value not in RUNTIMES:
            raise ValueError(f"unknown runtime {value!r}; choose one of: {', '.join(RUNTIMES)}")
        return value

    @field_validator("triton_version")
    @classmethod
    def _a_release(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}\.\d{2}", value):
            raise ValueError(f"{value!r} is not a Triton container release like 24.09")
        return value

    @field_validator("unload_blocks_invokes", mode="before")
    @classmethod
    def _known_switch(cls, value: object) -> object:
        if value not in UNLOAD_BLOCKS_INVOKES:
            raise ValueError(f"{value!r} is not one of: {', '.join(UNLOAD_BLOCKS_INVOKES)}")
        return value

    @field_validator("docker_gpus")
    @classmethod
    def _gpu_list(cls, value: str) -> str:
        if value in ("all", "none") or re.fullmatch(r"\d+(,\d+)*", value):
            return value
        raise ValueError(f"{value!r} is not all, none or a device list like 0,1")

    @model_validator(mode="after")
    def _stack_runs_here(self) -> EmulatorSettings:
        if self.stack == "torchserve" and self.runtime != "embedded":
            raise ValueError(
                f"the torchserve stack runs embedded only (a JVM started here), not with "
                f"runtime {self.runtime!r}"
            )
        return self

    @field_validator("instance_count")
    @classmethod
    def _instance_count_in_range(cls, count: int) -> int:
        if count < 1:
            raise ValueError(f"{count} instances: an endpoint has at least one")
        if count > MAX_LOCAL_INSTANCES:
            raise ValueError(
                f"{count} instances: at most {MAX_LOCAL_INSTANCES} run locally (each is a Triton "
                "process with its own memory budget on this machine)"
            )
        return count

    @model_validator(mode="after")
    def _instances_run_here(self) -> EmulatorSettings:
        count = self.instance_count
        if count > 1 and (self.runtime != "embedded" or self.stack != "triton"):
            what = "the torchserve stack" if self.stack != "triton" else f"runtime {self.runtime!r}"
            raise ValueError(
                f"instance_count {count}: several instances run on the embedded Triton runtime "
                f"only, not with {what}"
            )
        return self

    @model_validator(mode="after")
    def _mutex_is_tritons(self) -> EmulatorSettings:
        if self.unload_blocks_invokes == "on" and self.stack != "triton":
            raise ValueError(
                "unload_blocks_invokes on plays Triton's SageMaker front end; the "
                f"{self.stack} stack has no such mutex"
            )
        return self

    @model_validator(mode="after")
    def _sigv4_has_a_secret(self) -> EmulatorSettings:
        if self.require_sigv4 and not self.secret_access_key:
            raise ValueError(
                "require_sigv4 needs the secret clients sign with: set "
                "MME_LOCAL_SECRET_ACCESS_KEY or [local] secret_access_key in mme.toml"
            )
        return self

    @property
    def cache_enabled(self) -> bool:
        return self.model_cache == "Enabled"

    def unloads_block_invokes(self) -> bool:
        """`unload_blocks_invokes` resolved: whether the gateway plays the model-list mutex."""
        if self.unload_blocks_invokes == "auto":
            return self.stack == "triton" and unload_blocks_invokes(self.triton_version)
        return self.unload_blocks_invokes == "on"

    def parallel_downloads(self) -> int:
        if self.max_parallel_downloads is not None:
            return self.max_parallel_downloads
        return lookup_instance_type(self.instance_type).vcpus

    def parallel_loads(self) -> int:
        if self.max_parallel_loads is not None:
            return self.max_parallel_loads
        return lookup_instance_type(self.instance_type).vcpus

    def disk_budget(self) -> int | None:
        if self.disk_limit_bytes is not None:
            return self.disk_limit_bytes
        return lookup_instance_type(self.instance_type).instance_storage_bytes

    def host_memory_budget(self) -> int:
        if self.memory_limit_bytes is not None:
            return self.memory_limit_bytes
        return lookup_instance_type(self.instance_type).host_memory_bytes

    def gpu_memory_budget(self) -> int:
        if self.gpu_memory_limit_bytes is not None:
            return self.gpu_memory_limit_bytes
        return lookup_instance_type(self.instance_type).gpu_memory_bytes


class DeploySettings(EndpointFields):
    """What `deploy` and `teardown` need: `[endpoint]` plus the `[deploy]` section."""

    endpoint_name: str = Field("", json_schema_extra=_toml("endpoint", "name"))
    """The EndpointName to create or update (required)."""
    model_data_url: str = Field("", json_schema_extra=_toml("endpoint", "model_data_url"))
    """s3://bucket/prefix/ holding the model.tar.gz objects (required)."""
    region: str = Field("", json_schema_extra=_toml("endpoint", "region"))
    """AWS region; empty takes AWS_REGION, then the profile's region."""
    instance_type: str = Field("", json_schema_extra=_toml("endpoint", "instance_type"))
    """A single-GPU instance type GPU MME runs on (required)."""
    role_arn: str = Field("", json_schema_extra=_toml("deploy", "role_arn"))
    """IAM role SageMaker assumes to read the artifacts (required)."""
    instance_count: int = Field(1, ge=1, json_schema_extra=_toml("deploy", "instance_count"))
    """Instances behind the endpoint."""
    triton_version: str = Field(
        DEFAULT_TRITON_VERSION, json_schema_extra=_toml("deploy", "triton_version")
    )
    """SageMaker Triton image version (stack "triton")."""
    pytorch_version: str = Field("2.6", json_schema_extra=_toml("deploy", "pytorch_version"))
    """SageMaker PyTorch inference image version (stack "torchserve"; 2.6 runs TorchServe
    0.12.0, as the local stack does)."""
    profile: str | None = Field(None, json_schema_extra=_toml("deploy", "profile"))
    """AWS profile for credentials."""
