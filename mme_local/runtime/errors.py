"""What can go wrong between mme-local and the model server, as typed exceptions."""

from __future__ import annotations


class RuntimeFailure(RuntimeError):
    """The model server could not be started, or stopped answering."""


class RuntimeExited(RuntimeFailure):
    """The model server process ended when nobody asked it to."""

    def __init__(self, returncode: int | None, log_tail: str, server: str = "tritonserver") -> None:
        self.returncode = returncode
        self.log_tail = log_tail
        super().__init__(f"{server} exited with status {returncode}; last log lines:\n{log_tail}")


class RuntimeUnavailable(RuntimeFailure):
    """The model server did not answer (connection refused, reset or timed out)."""


class RuntimeTimeout(RuntimeUnavailable):
    """The model server did not answer within the time limit."""


class ContainerError(Exception):
    """The MME container API answered with a non-2xx status."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.body = body


class ModelNotFound(ContainerError):
    """404: the container has no model by that name."""

    status_code = 404


class ModelAlreadyLoaded(ContainerError):
    """409: a load named a model that is already registered."""

    status_code = 409


class InsufficientMemory(ContainerError):
    """507: the container ran out of memory loading or running the model."""

    status_code = 507


class LoadRejected(ContainerError):
    """400: the container could not load the model (bad config, missing files, ...)."""

    status_code = 400
