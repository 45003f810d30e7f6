"""InvokeEndpoint without HTTP: validate, lease the model, forward the bytes, map failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mme_local.cache.extract import ArchiveRejected
from mme_local.cache.manager import ModelCache, ModelNotReady
from mme_local.gateway import validation
from mme_local.gateway.errors import (
    InternalDependencyException,
    InternalFailure,
    ModelError,
    ModelNotReadyException,
    SageMakerError,
    ServiceUnavailable,
    ValidationError,
)
from mme_local.metrics import Metrics
from mme_local.runtime.client import ContainerClient, InvokeResult
from mme_local.runtime.errors import (
    ContainerError,
    ModelNotFound,
    RuntimeFailure,
    RuntimeTimeout,
    RuntimeUnavailable,
)
from mme_local.store.source import ObjectMissing, StoreUnavailable

log = logging.getLogger(__name__)

# SageMaker's own words when the container does not answer in time.
_TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. "
    "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, "
    "and try again."
)


@dataclass(frozen=True)
class InvokeRequest:
    endpoint_name: str
    target_model: str | None
    body: bytes
    request_id: str
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    inference_id: str | None = None
    target_variant: str | None = None


@dataclass(frozen=True)
class InvokeResponse:
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    variant_name: str


@dataclass(frozen=True)
class EndpointIdentity:
    name: str
    variant_name: str
    account_id: str
    region: str
    log_location: str

    @property
    def log_stream_arn(self) -> str:
        return (
            f"arn:aws:logs:{self.region}:{self.account_id}:log-group:"
            f"/aws/sagemaker/Endpoints/{self.name}"
        )


@dataclass(frozen=True)
class InvocationRecord:
    """What one invocation did, for an observer (e.g. `up --trace`)."""

    time: float
    """Epoch seconds at arrival."""
    target_model: str
    status: int
    cache_hit: bool | None
    """None when the request failed before its model was leased."""
    wait_s: float
    model_s: float


class EndpointService:
    def __init__(
        self,
        identity: EndpointIdentity,
        cache: ModelCache,
        client: ContainerClient,
        metrics: Metrics,
        observer: Callable[[InvocationRecord], None] | None = None,
    ) -> None:
        self.identity = identity
        self.cache = cache
        self.client = client
        self.metrics = metrics
        self.observer = observer

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        started = time.perf_counter()
        arrived = time.time()
        self.metrics.invocations.inc()
        hit: list[bool] = []
        try:
            response, model_s, waited_s = await self._invoke(request, hit)
        except SageMakerError as error:
            if self.observer is not None:
                waited = 0.0 if hit and hit[-1] else time.perf_counter() - started
                self.observer(
                    InvocationRecord(
                        arrived,
                        request.target_model or "",
                        error.status,
                        hit[-1] if hit else None,
                        waited,
                        0.0,
                    )
                )
            if error.status >= 500:
                self.metrics.invocation_5xx_errors.inc()
            else:
                self.metrics.invocation_4xx_errors.inc()
            if isinstance(error, ModelError):
                self.metrics.invocation_model_errors.inc()
            raise
        self.metrics.model_latency.observe(model_s)
        self.metrics.overhead_latency.observe(
            max(0.0, time.perf_counter() - started - model_s - waited_s)
        )
        if self.observer is not None:
            record = InvocationRecord(
                arrived, request.target_model or "", 200, hit[-1], waited_s, model_s
            )
            self.observer(record)
        return response

    async def _invoke(
        self, request: InvokeRequest, hit: list[bool]
    ) -> tuple[InvokeResponse, float, float]:
        identity = self.identity
        validation.check_endpoint_name(request.endpoint_name)
        if request.endpoint_name != identity.name:
            raise ValidationError(
                f"Endpoint {request.endpoint_name} of account {identity.account_id} not found."
            )
        target = validation.check_target_model(request.target_model, request.request_id)
        validation.check_body_size(len(request.body))
        validation.check_optional_headers(
            request.custom_attributes, request.inference_id, request.target_variant
        )
        if request.target_variant is not None and request.target_variant != identity.variant_name:
            raise ValidationError(
                f"Target variant {request.target_variant} not found for endpoint {identity.name}."
            )
        try:
            try:
                return await self._forward(target, request, hit)
            except ModelNotFound:
                # The container lost the model behind the cache's back; it loads again once.
                return await self._forward(target, request, hit)
        except SageMakerError:
            raise
        except Exception as error:
            raise self._translate(error, target) from error

    async def _forward(
        self, target: str, request: InvokeRequest, hit: list[bool]
    ) -> tuple[InvokeResponse, float, float]:
        """Lease the model and pass the bytes through; returns (answer, model s, wait s).

        Appends whether the lease was a cache hit to `hit`.
        """
        async with self.cache.acquire(target) as lease:
            hit.append(lease.cache_hit)
            if lease.cache_hit:
                self.metrics.model_cache_hit.inc()
            self.metrics.model_invocations.labels(target_model=target).inc()
            sent = time.perf_counter()
            try:
                result = await self.client.invoke(
                    lease.name,
                    target,
                    request.body,
                    request.content_type,
                    request.accept,
                    request.custom_attributes,
                )
            except ModelNotFound:
                self.cache.mark_not_loaded(lease)
                raise
            return self._success(result), time.perf_counter() - sent, lease.waited_s

    def _success(self, result: InvokeResult) -> InvokeResponse:
        return InvokeResponse(
            body=result.body,
            content_type=result.content_type,
            custom_attributes=result.custom_attributes,
            variant_name=self.identity.variant_name,
        )

    def _model_error(self, status: int, message: str) -> ModelError:
        kind = "client" if 400 <= status < 500 else "server"
        code = "CLIENT_ERROR_FROM_MODEL" if kind == "client" else "INTERNAL_FAILURE_FROM_MODEL"
        return ModelError(
            f'Received {kind} error ({status}) from model with message "{message}". '
            f"See {self.identity.log_location} in account {self.identity.account_id} "
            "for more information.",
            error_code=code,
            original_status=status,
            original_message=message,
            log_stream_arn=self.identity.log_stream_arn,
        )

    def _translate(self, error: Exception, target: str) -> SageMakerError:
        if isinstance(error, ContainerError):
            return self._model_error(error.status_code, error.message)
        if isinstance(error, ModelNotReady):
            return ModelNotReadyException(str(error))
        if isinstance(error, ObjectMissing):
            return ValidationError(str(error))
        if isinstance(error, ArchiveRejected):
            return ValidationError(
                f"Model data for {target} could not be used: {error}. "
                "Fix the archive (see `mme-local lint`) and publish it under a new name."
            )
        if isinstance(error, StoreUnavailable):
            return InternalDependencyException(f"Could not read model data for {target}: {error}")
        if isinstance(error, RuntimeTimeout):
            return ModelError(
                f'Received server error (0) from primary with message "{_TIMEOUT_MESSAGE}". '
                f"See {self.identity.log_location} in account {self.identity.account_id} "
                "for more information.",
                error_code="INTERNAL_FAILURE_FROM_MODEL",
                original_status=0,
                original_message=_TIMEOUT_MESSAGE,
                log_stream_arn=self.identity.log_stream_arn,
            )
        if isinstance(error, (RuntimeUnavailable, RuntimeFailure)):
            return ServiceUnavailable(f"The model server is unavailable: {error}")
        if isinstance(error, OSError):
            log.exception("I/O error serving %s", target)
            return InternalFailure(f"An I/O error occurred while preparing {target}: {error}")
        log.exception("unexpected error serving %s", target)
        return InternalFailure(f"An internal error occurred: {type(error).__name__}: {error}")
