"""The root of the `mme-local` command: it only composes the command groups."""

from __future__ import annotations

import typer

from mme_local.cli import runtime_cmd
from mme_local.cli.errors import run_app

app = typer.Typer(
    name="mme-local",
    help="A local SageMaker GPU multi-model endpoint on a real Triton, and one-command promotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(runtime_cmd.app, name="runtime")


def main() -> None:
    run_app(app)
