"""What `up` checks before it starts anything: the gateway's port and the `--models` folder.

Each finding names the flag (or variable, or mme.toml key) the value came from, so the user
knows what to change.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from mme_local.config_file import SettingsError
from mme_local.serving import PortUnavailable, check_port


@dataclass(frozen=True)
class ModelsFolder:
    """What a `--models` folder holds."""

    archives: int
    triton_folders: tuple[str, ...]
    """Sub-folders holding a config.pbtxt: Triton model folders not yet archived."""
    hf_folders: tuple[str, ...]
    """Sub-folders holding a config.json: Hugging Face models not yet packaged."""


def survey(folder: Path) -> ModelsFolder:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    return ModelsFolder(
        archives=sum(1 for _ in folder.glob("*.tar.gz")),
        triton_folders=tuple(p.name for p in subfolders if (p / "config.pbtxt").is_file()),
        hf_folders=tuple(p.name for p in subfolders if (p / "config.json").is_file()),
    )


def check_models_folder(folder: Path | None, source: str) -> list[str]:
    """Warnings about the folder `up` publishes from; SettingsError when it can't be used."""
    if folder is None:
        return []
    if not folder.exists():
        raise SettingsError(f"{source}: {folder} does not exist")
    if not folder.is_dir():
        raise SettingsError(f"{source}: {folder} is not a folder of *.tar.gz files")
    found = survey(folder)
    if found.archives:
        return []
    warnings = [f"{source}: {folder} holds no *.tar.gz artifact; serving an empty prefix"]
    if (folder / "config.json").is_file():
        warnings.append(
            f"  {folder} is a Hugging Face model folder: package it first, e.g. "
            f"`mme-local package {folder} --out-dir artifacts`, then `--models artifacts`"
        )
    if (folder / "config.pbtxt").is_file():
        warnings.append(
            f"  {folder} is a Triton model folder: archive it first, e.g. "
            f"`tar -C {folder.parent} -czf {folder.name}.tar.gz {folder.name}`, and pass the "
            "folder that holds the archive"
        )
    if found.hf_folders:
        first = found.hf_folders[0]
        warnings.append(
            f"  {folder} holds model folders ({', '.join(found.hf_folders)}): package each one "
            f"first, e.g. `mme-local package {folder / first} --out-dir {folder}`"
        )
    if found.triton_folders:
        first = found.triton_folders[0]
        warnings.append(
            f"  {folder} holds Triton model folders ({', '.join(found.triton_folders)}): archive "
            f"each one, e.g. `tar -C {folder} -czf {folder / first}.tar.gz {first}`, and check "
            f"it with `mme-local lint {folder}`"
        )
    return warnings


def check_gateway_port(host: str, port: int, port_source: str, host_source: str) -> None:
    """SettingsError naming the flag when the gateway could not listen on (host, port).

    `port_source` and `host_source` say where each value came from (`setting_source`).
    """
    try:
        check_port(host, port)
    except PortUnavailable as error:
        if error.errno == errno.EADDRINUSE:
            where = "--port" if port_source == "the default" else port_source
            raise SettingsError(
                f"{where}: {error.strerror}; choose another port with --port "
                f"(e.g. --port {port + 1}) or stop what listens there"
            ) from None
        where = "--host" if host_source == "the default" else host_source
        raise SettingsError(f"{where}: {error.strerror}; fix --host") from None
