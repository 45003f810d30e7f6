"""Facts about the SageMaker instance types that run GPU multi-model endpoints.

One table, read by the emulator (default budgets and parallelism for `--instance-type`) and by
the deployer (which types `deploy` accepts). Sources:

- Families and nominal figures: AWS's "Supported algorithms, frameworks, and instances for
  multi-model endpoints" (GPU table: ml.p2.xlarge, ml.p3.2xlarge, ml.g4dn.*, ml.g5.*; single-GPU
  sizes only), checked 2026-11.
- Usable GPU memory: what `nvidia-smi` reports as total on the instance (T4 15,360 MiB, A10G
  23,028 MiB, V100-16GB 16,160 MiB, K80 11,441 MiB), from public nvidia-smi dumps.
- vCPUs, host memory and NVMe instance storage: Amazon EC2 instance type pages for the
  underlying g4dn/g5/p2/p3 types. p2 and p3 have no instance storage (EBS only).
- Compute capability: NVIDIA's CUDA GPU table (K80 3.7, V100 7.0, T4 7.5, A10G 8.6).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024**2
GiB = 1024**3
GB = 1000**3


class UnknownInstanceType(ValueError):
    """The name is not one of the instance types GPU multi-model endpoints run on."""


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    """The GPU model, e.g. "NVIDIA T4"."""
    gpu_memory_mib: int
    """Usable GPU memory as nvidia-smi reports it on the instance (less than the nominal size)."""
    host_memory_gib: float
    vcpus: int
    instance_storage_gb: int | None
    """Fixed NVMe instance storage in GB; None where the instance has EBS storage only."""
    compute_capability: tuple[int, int]

    @property
    def family(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def gpu_memory_bytes(self) -> int:
        return self.gpu_memory_mib * MiB

    @property
    def host_memory_bytes(self) -> int:
        return int(self.host_memory_gib * GiB)

    @property
    def instance_storage_bytes(self) -> int | None:
        return None if self.instance_storage_gb is None else self.instance_storage_gb * GB


def _family(
    prefix: str,
    gpu: str,
    gpu_memory_mib: int,
    compute_capability: tuple[int, int],
    sizes: list[tuple[str, int, float, int | None]],
) -> list[InstanceType]:
    return [
        InstanceType(
            f"ml.{prefix}.{size}", gpu, gpu_memory_mib, memory, vcpus, storage, compute_capability
        )
        for size, vcpus, memory, storage in sizes
    ]


_TABLE: list[InstanceType] = [
    *_family("p2", "NVIDIA K80", 11_441, (3, 7), [("xlarge", 4, 61, None)]),
    *_family("p3", "NVIDIA V100", 16_160, (7, 0), [("2xlarge", 8, 61, None)]),
    *_family(
        "g4dn",
        "NVIDIA T4",
        15_360,
        (7, 5),
        [
            ("xlarge", 4, 16, 125),
            ("2xlarge", 8, 32, 225),
            ("4xlarge", 16, 64, 225),
            ("8xlarge", 32, 128, 900),
            ("16xlarge", 64, 256, 900),
        ],
    ),
    *_family(
        "g5",
        "NVIDIA A10G",
        23_028,
        (8, 6),
        [
            ("xlarge", 4, 16, 250),
            ("2xlarge", 8, 32, 450),
            ("4xlarge", 16, 64, 600),
            ("8xlarge", 32, 128, 900),
            ("16xlarge", 64, 256, 1900),
        ],
    ),
]

INSTANCE_TYPES: dict[str, InstanceType] = {instance.name: instance for instance in _TABLE}
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"


def supported_families() -> str:
    """'ml.p2.xlarge; ml.g4dn.{xlarge,2xlarge,...}' built from the table."""
    families: dict[str, list[str]] = {}
    for name in INSTANCE_TYPES:
        family, _, size = name.rpartition(".")
        families.setdefault(family, []).append(size)
    return "; ".join(
        f"{family}.{sizes[0]}" if len(sizes) == 1 else f"{family}.{{{','.join(sizes)}}}"
        for family, sizes in families.items()
    )


def instance_type(name: str, what: str = "--instance-type") -> InstanceType:
    """The table's entry for `name`, or UnknownInstanceType saying which ones exist.

    `what` names where the value came from (a flag or a settings key) in the message.
    """
    found = INSTANCE_TYPES.get(name)
    if found is not None:
        return found
    family = name.rpartition(".")[0]
    known_family = any(t.family == family for t in _TABLE)
    why = (
        "is not a single-GPU size of its family"
        if known_family
        else "is not an instance type SageMaker runs GPU multi-model endpoints on"
    )
    raise UnknownInstanceType(
        f"{what} {name} {why}; GPU MME needs one GPU per instance: ".lstrip()
        + f"use one of {supported_families()}"
    )
