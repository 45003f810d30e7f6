"""Everything `mme-local up` can be told, in one object with a docstring under each field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mme_local.instances import instance_type as lookup_instance_type
from mme_local.runtime.base import TritonSettings

GiB = 1024**3

DEFAULT_MODEL_DATA_URL = "s3://mme-local/models/"


@dataclass
class EmulatorSettings:
    host: str = "127.0.0.1"
    """Address the gateway listens on; loopback unless told otherwise."""
    port: int = 8080
    """Gateway port; 0 picks a free one."""
    endpoint_name: str = "local-mme"
    """The EndpointName clients must use."""
    variant_name: str = "AllTraffic"
    """Returned in x-Amzn-Invoked-Production-Variant."""
    region: str = "us-east-1"
    """Region used in ARNs and for the embedded store's clients."""
    account_id: str = "123456789012"
    """Account id used in error messages and ARNs."""
    model_data_url: str = DEFAULT_MODEL_DATA_URL
    """The S3 prefix holding the model.tar.gz objects (ModelDataUrl)."""
    s3_endpoint_url: str | None = None
    """An external S3 API (MinIO, AWS, a moto server); None starts an embedded moto server."""
    models_dir: Path | None = None
    """Upload every *.tar.gz in this folder under the prefix at start (unchanged ones skipped)."""
    cache_dir: Path | None = None
    """Where artifacts are downloaded and extracted; a temporary folder if None."""
    runtime: str = "embedded"
    """"embedded" (the tritonserver binary) or "docker" (NVIDIA's container)."""
    triton_home: Path | None = None
    """A Triton installation for the embedded runtime; found or provisioned if None."""
    triton: TritonSettings = field(default_factory=TritonSettings)
    """How Triton is started."""
    docker_image: str = "nvcr.io/nvidia/tritonserver:24.09-py3"
    """Image for the docker runtime."""
    docker_gpus: str = "all"
    """GPUs for the docker runtime: "all", a device index list like "0", or "none"."""
    instance_type: str = "ml.g5.xlarge"
    """Instance type whose memory sets the default memory budget."""
    max_loaded_models: int | None = None
    """Most models loaded at once; None means only memory limits it."""
    memory_limit_bytes: int | None = None
    """Host memory budget for Triton and its stubs; None takes the instance type's."""
    gpu_memory_limit_bytes: int | None = None
    """GPU memory budget per GPU; None takes the instance type's (only checked with a GPU)."""
    disk_limit_bytes: int | None = None
    """Disk budget for extracted artifacts; None means unlimited."""
    max_archive_bytes: int = 64 * GiB
    """Largest expanded size accepted for one model archive."""
    model_ready_timeout_s: float = 60.0
    """A cold request waits this long before answering ModelNotReadyException (429)."""
    model_load_timeout_s: float = 360.0
    """How long a download plus load may go on in the background."""
    invoke_timeout_s: float = 60.0
    """The model must answer within this time, as on SageMaker."""
    model_cache: str = "Enabled"
    """MultiModelConfig.ModelCacheSetting: "Disabled" unloads and deletes after each invocation."""

    def host_memory_budget(self) -> int:
        if self.memory_limit_bytes is not None:
            return self.memory_limit_bytes
        return lookup_instance_type(self.instance_type).host_memory_bytes

    def gpu_memory_budget(self) -> int:
        if self.gpu_memory_limit_bytes is not None:
            return self.gpu_memory_limit_bytes
        return lookup_instance_type(self.instance_type).gpu_memory_bytes
