"""What can stop a deploy or teardown; each message is one line that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CloudError(Exception):
    """A deploy or teardown problem whose text is a complete message for the user."""


class InvalidDeployInput(CloudError):
    """Caught before any AWS call: bad instance type, name, ARN, URL or artifact.

    Holds every problem found, so a user fixes them in one go: one problem reads as its own
    line; several are counted, one indented line each.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        if len(problems) == 1:
            text = problems[0]
        else:
            text = f"{len(problems)} problems with the inputs:" + "".join(
                f"\n  {problem}" for problem in problems
            )
        super().__init__(text)


class Problems:
    """Runs checks and keeps every InvalidDeployInput they raise, to raise them together."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(self, run: Callable[[], T]) -> T | bool:
        """`run()`'s result, or False when it raised InvalidDeployInput (kept for later)."""
        try:
            return run()
        except InvalidDeployInput as error:
            self.found.extend(error.problems)
            return False

    def raise_any(self) -> None:
        if self.found:
            raise InvalidDeployInput(*self.found)


class AwsCallFailed(CloudError):
    """AWS refused or failed a call; the message says what to do and what was left behind."""


class EndpointFailed(CloudError):
    """The endpoint reached Failed, or an update rolled back."""


class DeployTimeout(CloudError):
    """The endpoint did not reach InService in time; AWS carries on regardless."""


class ArtifactConflict(CloudError):
    """An artifact's key already holds other content; nothing was uploaded."""


class TeardownRefused(CloudError):
    """Something teardown was asked to delete carries no owner tag, or another owner's."""
