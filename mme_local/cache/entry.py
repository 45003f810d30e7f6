"""The state of one TargetModel on this instance (held and changed by `cache.machine` only)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ModelState(enum.Enum):
    REMOTE = "remote"
    """Only in S3."""
    DOWNLOADING = "downloading"
    """Waiting for disk room or a download slot, or being downloaded and extracted."""
    ON_DISK = "on disk"
    """Extracted in the cache folder, not loaded."""
    LOADING = "loading"
    """Waiting for memory or a load slot, or being loaded by the container."""
    LOADED = "loaded"
    UNLOADING = "unloading"


IN_TRANSITION = (ModelState.DOWNLOADING, ModelState.LOADING, ModelState.UNLOADING)
# Module names for the members the properties below test: an Enum member read through its
# class costs a lookup each time, and the cache's eviction and disk passes test these often.
_LOADED, _ON_DISK = ModelState.LOADED, ModelState.ON_DISK


class Waiting(enum.Enum):
    """What a model in a transition state is queued for (None: its work is running)."""

    DISK_ROOM = "disk room"
    DOWNLOAD_SLOT = "download slot"
    MEMORY = "memory"
    LOAD_SLOT = "load slot"


@dataclass(eq=False)
class ModelEntry:
    target_model: str
    name: str
    """The opaque model name sent to the container (a hash of the TargetModel)."""
    state: ModelState = ModelState.REMOTE
    waiting: Waiting | None = None
    pins: int = 0
    """Requests in flight or waiting on this model; a pinned model is never unloaded."""
    waiters: list[int] = field(default_factory=list)
    """Requests waiting for the model to be loaded, in arrival order."""
    last_used: float = 0.0
    """The cache's clock at the last request (monotonic seconds, or virtual time)."""
    last_used_wall: float = 0.0
    disk_bytes: int = 0
    disk_reserved: int = 0
    """Disk held back for this model's download in flight (0 when none)."""
    size_hint: int | None = None
    """The archive's size in S3, once probed (sizes the disk reservation)."""
    memory_bytes: int = 0
    """Host memory the model holds, as last measured (0 until known)."""
    memory_measured: bool = False
    """Whether `memory_bytes` comes from a measurement of this model's last load."""
    gpu_bytes: int = 0
    """GPU memory the model holds, as last measured (0 until known)."""
    holds_memory: bool = False
    """Counted in the memory in use: from the load's licence until its unload ends."""
    reclaim: bool = False
    """Delete from disk when the unload in flight ends (model cache disabled, disk room)."""
    retry_after_unload: bool = False
    """A load answered 507: load again once the unload that makes room has ended."""
    etag: str | None = None
    """The S3 ETag of the bytes on disk (recorded at download)."""
    artifact_changed: bool = False
    """The object in S3 no longer has `etag`: this instance serves older bytes."""
    downloads: int = 0
    loads: int = 0
    unloads: int = 0
    invocations: int = 0
    last_error: str | None = None
    loaded_at: float = 0.0

    @property
    def busy(self) -> bool:
        """A download, load or unload is in flight or queued."""
        return self.state in IN_TRANSITION

    @property
    def evictable(self) -> bool:
        return self.state is _LOADED and self.pins == 0

    @property
    def deletable(self) -> bool:
        return self.state is _ON_DISK and self.pins == 0
