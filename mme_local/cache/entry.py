"""The state of one TargetModel on this instance."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field


class ModelState(enum.Enum):
    REMOTE = "remote"
    """Only in S3."""
    DOWNLOADING = "downloading"
    ON_DISK = "on disk"
    """Extracted in the cache folder, not loaded."""
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


@dataclass
class ModelEntry:
    target_model: str
    name: str
    """The opaque model name sent to the container (a hash of the TargetModel)."""
    state: ModelState = ModelState.REMOTE
    pins: int = 0
    """Requests in flight or waiting on this model; a pinned model is never unloaded."""
    transition: asyncio.Task[None] | None = None
    """The one download+load or unload in flight for this model, if any."""
    last_used: float = field(default_factory=time.monotonic)
    last_used_wall: float = field(default_factory=time.time)
    disk_bytes: int = 0
    memory_bytes: int = 0
    """Host memory the model holds, as last measured (0 until known)."""
    memory_measured: bool = False
    """Whether `memory_bytes` comes from a measurement of this model's last load."""
    etag: str | None = None
    """The S3 ETag of the bytes on disk (recorded at download)."""
    artifact_changed: bool = False
    """The object in S3 no longer has `etag`: this instance serves older bytes."""
    downloads: int = 0
    loads: int = 0
    unloads: int = 0
    invocations: int = 0
    last_error: str | None = None

    def touch(self) -> None:
        self.last_used = time.monotonic()
        self.last_used_wall = time.time()

    @property
    def evictable(self) -> bool:
        return self.state is ModelState.LOADED and self.pins == 0 and self.transition is None

    @property
    def deletable(self) -> bool:
        return self.state is ModelState.ON_DISK and self.pins == 0 and self.transition is None

    @property
    def idle_s(self) -> float:
        return time.monotonic() - self.last_used
