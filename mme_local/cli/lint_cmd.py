"""`mme-local lint`: check model.tar.gz artifacts before they are served or uploaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mme_local.artifacts.lint import DEFAULT_MAX_EXPANDED_BYTES, find_archives, lint_archive


def lint(
    paths: Annotated[
        list[Path],
        typer.Argument(help="model.tar.gz files, or folders whose *.tar.gz are all checked."),
    ],
    max_expanded_bytes: Annotated[
        int, typer.Option(help="Largest total size one archive may expand to.")
    ] = DEFAULT_MAX_EXPANDED_BYTES,
    stack: Annotated[
        str | None,
        typer.Option(
            help="The endpoint's stack (triton, torchserve): an archive for the other one is an "
            "error. Default: check each archive as what it is."
        ),
    ] = None,
) -> None:
    """Check artifacts the way SageMaker's Triton or TorchServe reads them; exit 1 on errors."""
    if stack not in (None, "triton", "torchserve"):
        raise typer.BadParameter("choose triton or torchserve", param_hint="--stack")
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise typer.BadParameter(f"no such file or folder: {', '.join(missing)}")
    archives = find_archives(paths)
    if not archives:
        typer.secho("error: no *.tar.gz found in the given folders", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    errors = warnings = 0
    for archive in archives:
        for problem in lint_archive(archive, max_expanded_bytes, stack):
            color = typer.colors.RED if problem.severity == "error" else typer.colors.YELLOW
            typer.secho(str(problem), fg=color)
            errors += problem.severity == "error"
            warnings += problem.severity == "warning"
    failed = "" if errors == 0 else " (fix the errors before serving or deploying)"
    typer.echo(
        f"{len(archives)} archive(s) checked: {errors} error(s), {warnings} warning(s){failed}"
    )
    if errors:
        raise typer.Exit(1)
