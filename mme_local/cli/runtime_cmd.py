"""`mme-local runtime`: what Triton mme-local will run, and installing it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mme_local.runtime import provision
from mme_local.runtime.embedded import probe_version
from mme_local.runtime.gpus import visible_gpus

app = typer.Typer(
    help="Find, describe and install the Triton server mme-local runs.", no_args_is_help=True
)

TritonHome = Annotated[
    Path | None,
    typer.Option(
        "--triton-home", help="A Triton installation to use instead of the default search."
    ),
]


def _progress(message: str) -> None:
    typer.secho(message, err=True, fg=typer.colors.CYAN)


@app.command()
def info(triton_home: TritonHome = None) -> None:
    """Show the Triton version, binary, backends, Python stub and visible GPUs."""
    try:
        install = provision.locate(triton_home)
    except provision.RuntimeNotFound as error:
        if triton_home is not None:
            where = "--triton-home"
        elif os.environ.get(provision.TRITON_HOME_ENV):
            where = f"${provision.TRITON_HOME_ENV}"
        else:
            where = "tritonserver on PATH"
        raise provision.RuntimeNotFound(f"{where}: {error}") from None
    if install is None:
        typer.echo(
            "error: Triton not found (looked at --triton-home, $MME_LOCAL_TRITON_HOME, "
            f"tritonserver on PATH and {provision.installed_copy()}): run "
            "`mme-local runtime install`, or point MME_LOCAL_TRITON_HOME or --triton-home at "
            "an installation",
            err=True,
        )
        raise typer.Exit(1)
    version = install.version or probe_version(install) or "unknown"
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = install.stub_for(sys.version_info[:2])
    backends = sorted(p.name for p in install.python_backend_dir.parent.iterdir() if p.is_dir())
    gpus = visible_gpus()
    rows = [
        ("Triton version", version),
        ("binary", str(install.binary)),
        ("found via", install.source),
        (
            "backends",
            ", ".join([*backends, "pytorch (mme-local, TorchScript on the Python backend)"]),
        ),
        (f"Python {python} stub", str(stub) if stub else "missing"),
        (
            "GPUs",
            "; ".join(f"{g.index}: {g.name} ({g.memory_total_bytes >> 20} MiB)" for g in gpus)
            or "none",
        ),
        ("TorchServe", _torchserve_line()),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")
    if stub is None:
        typer.echo(
            f"error: {install.home} (found via {install.source}) has no Triton Python backend "
            f"stub for Python {python}, so the embedded runtime can't load models: "
            f"{_stub_advice(install.source)}",
            err=True,
        )
        raise typer.Exit(1)


def _stub_advice(source: str) -> str:
    if source == f"${provision.TRITON_HOME_ENV}":
        return (
            f"point ${provision.TRITON_HOME_ENV} at the folder that holds pytriton/ (the "
            "provisioned copy is under " + str(provision.installed_copy()) + "), or unset it"
        )
    if source == "explicit path":
        return "point --triton-home at the folder that holds pytriton/, or leave it out"
    return "run `mme-local runtime install --force`, or use --runtime docker"


def _torchserve_line() -> str:
    from mme_local.runtime.errors import RuntimeFailure
    from mme_local.runtime.torchserve_install import find_install

    try:
        found = find_install()
    except RuntimeFailure as error:
        return str(error)
    return f"{found.version}, java {found.java}"


@app.command()
def install(
    wheel: Annotated[
        Path | None, typer.Option(help="A downloaded nvidia-pytriton wheel to install from.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Reinstall even if a copy is present.")] = False,
) -> None:
    """Provision the pinned Triton (from the nvidia-pytriton wheel) into the user cache."""
    result = provision.install(wheel=wheel, progress=_progress, force=force)
    typer.echo(f"Triton {result.version} installed at {result.home}")
