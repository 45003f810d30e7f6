"""Where mme-local keeps files between runs."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MME_LOCAL_CACHE"


def user_cache_dir() -> Path:
    """$MME_LOCAL_CACHE, else $XDG_CACHE_HOME/mme-local, else ~/.cache/mme-local."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "mme-local"
