"""One table that turns library exceptions into one-line messages and exit codes."""

from __future__ import annotations

import sys

import typer

from cloud.errors import CloudError
from mme_local.artifacts.archive import ArchiveError
from mme_local.artifacts.package import PackageError
from mme_local.artifacts.templates import TemplateError
from mme_local.capacity.errors import CapacityError
from mme_local.cli.invoke_view import InvokeFailed
from mme_local.config_file import ConfigFileError, SettingsError
from mme_local.demo.config import DemoError
from mme_local.runtime.backend_dir import StubNotFound
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.provision import ProvisionError, RuntimeNotFound
from mme_local.store.publish import ArtifactChanged
from mme_local.store.s3url import InvalidS3Url

# Exceptions whose text is already a complete message for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ProvisionError,
    RuntimeNotFound,
    StubNotFound,
    RuntimeFailure,
    ConfigFileError,
    SettingsError,
    CloudError,
    ArchiveError,
    PackageError,
    TemplateError,
    InvalidS3Url,
    DemoError,
    ArtifactChanged,
    CapacityError,
    InvokeFailed,
)


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

        if isinstance(error, (typer.Abort, click.exceptions.Abort)):
            sys.exit(130)
        # Usage errors and BadParameter: typer may bundle its own click, whose exceptions are
        # not click's, so they are recognised by what they can do.
        show, exit_code = getattr(error, "show", None), getattr(error, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        raise
    if isinstance(result, int):
        sys.exit(result)
