"""The root of the `mme-local` command: it only composes the command groups."""

from __future__ import annotations

import typer

from mme_local.cli import (
    cloud_cmd,
    inspect_cmd,
    invoke_cmd,
    lint_cmd,
    package_cmd,
    runtime_cmd,
    up_cmd,
)
from mme_local.cli.capacity_cmd import app as capacity_app
from mme_local.cli.errors import run_app

app = typer.Typer(
    name="mme-local",
    help="A local SageMaker GPU multi-model endpoint on a real Triton, and one-command promotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(up_cmd.up)
app.command("invoke")(invoke_cmd.invoke)
app.command("models")(inspect_cmd.models)
app.command("stats")(inspect_cmd.stats)
app.add_typer(runtime_cmd.app, name="runtime")
app.command("lint")(lint_cmd.lint)
app.command("deploy")(cloud_cmd.deploy)
app.command("teardown")(cloud_cmd.teardown)
app.command("package")(package_cmd.package)
app.command("demo")(package_cmd.demo)
app.add_typer(capacity_app, name="capacity")


def main() -> None:
    run_app(app)
