"""One table that turns library exceptions into one-line messages and exit codes."""

from __future__ import annotations

import sys

import typer

from mme_local.runtime.backend_dir import StubNotFound
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.provision import ProvisionError, RuntimeNotFound

# Exceptions whose text is already a complete message for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ProvisionError,
    RuntimeNotFound,
    StubNotFound,
    RuntimeFailure,
)


def register(*errors: type[BaseException]) -> None:
    """Let a command group add its own user-facing exception types."""
    global USER_ERRORS
    USER_ERRORS = (*USER_ERRORS, *errors)


def run_app(app: typer.Typer) -> None:
    try:
        result = app(standalone_mode=False)
    except USER_ERRORS as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as error:
        import click

        if isinstance(error, click.exceptions.Abort):
            sys.exit(130)
        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
    if isinstance(result, int):
        sys.exit(result)
