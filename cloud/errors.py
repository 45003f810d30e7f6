"""What can stop a deploy or teardown; each message is one line that says what to do."""

from __future__ import annotations


class CloudError(Exception):
    """A deploy or teardown problem whose text is a complete message for the user."""


class InvalidDeployInput(CloudError):
    """Caught before any AWS call: bad instance type, name, ARN, URL or artifact."""


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
