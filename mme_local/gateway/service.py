"""InvokeEndpoint without HTTP: validate, lease the model, forward the bytes, map failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mme_local.cache.extract import ArchiveRejected
from mme_local.cache.manager import Lease, ModelCache, ModelLoadTimeout, ModelNotReady
from mme_local.gateway import validation
from mme_local.gateway.errors import (
    MESSAGE_MAX_CHARS,
    InternalDependencyException,
    InternalFailure,
    ModelError,
    ModelNotReadyException,
    SageMakerError,
    ServiceUnavailable,
    ValidationError,
    cut_text,
)
from mme_local.gateway.fleet import Fleet, Member
from mme_local.metrics import Metrics
from mme_local.runtime.client import ContainerClient, InvokeResult
from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    ModelNotFound,
    RuntimeFailure,
    RuntimeTimeout,
    RuntimeUnavailable,
)
from mme_local.settings import EmulatorSettings
from mme_local.store.source import ObjectMissing, StoreUnavailable

log = logging.getLogger(__name__)

# SageMaker's own words when the container does not answer in time, as a multi-model endpoint
# words them (sagemaker-pytorch-inference-toolkit #92: "from model", "container model").
_TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container model. "
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
    session_id: str | None = None
    inference_component: str | None = None
    target_container_hostname: str | None = None
    enable_explanations: str | None = None
    prefix_aware_id: str | None = None
    """A routing hint among instances: validated, then kept by the platform (one instance)."""


@dataclass(frozen=True)
class InvokeResponse:
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    variant_name: str
    new_session_id: str | None = None
    closed_session_id: str | None = None


DEFAULT_ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class ServiceOptions:
    deadline_s: float = 60.0
    """One limit for the whole request: the wait for the model and the container's answer."""
    error_body_limit_bytes: int = DEFAULT_ERROR_BODY_LIMIT
    """How much of a container's error body the emulator's log keeps (ModelError itself quotes
    at most MESSAGE_MAX_CHARS of it, as the service model allows)."""

    @classmethod
    def from_settings(cls, settings: EmulatorSettings) -> ServiceOptions:
        return cls(settings.invoke_timeout_s, settings.model_error_body_limit_bytes)


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
    """The wait for a download and load (without a lease: the time until the failure)."""
    model_s: float
    download_s: float | None = None
    """A cold start's own download and load, without the queueing in `wait_s` (else None)."""
    load_s: float | None = None
    instance: int | None = None
    """The instance whose cache leased the model (None without a lease)."""
    routed: int | None = None
    """The instance the request was routed to, lease or not (None when it failed before
    routing): a 429 or a failed load belongs to it too."""
    done_s: float | None = None
    """Seconds from arrival until the request let go of its model (None without a lease)."""


class EndpointService:
    def __init__(
        self,
        identity: EndpointIdentity,
        cache: ModelCache,
        client: ContainerClient,
        metrics: Metrics,
        options: ServiceOptions | None = None,
        observer: Callable[[InvocationRecord], None] | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self.identity = identity
        self.cache = cache
        self.client = client
        self.fleet = fleet or Fleet([Member(0, cache, client)])
        """The instances; `cache` and `client` are the first one's."""
        self.metrics = metrics
        self.options = options or ServiceOptions()
        self.observer = observer

    def refuse_operation(self, endpoint_name: str, operation: str) -> SageMakerError:
        """The answer to a SageMaker Runtime operation a multi-model endpoint does not serve
        (response streaming, asynchronous inference), after the endpoint name is checked."""
        try:
            self._check_endpoint(endpoint_name)
        except SageMakerError as error:
            return error
        return ValidationError(
            f"Endpoint {endpoint_name} is a multi-model endpoint, which does not support "
            f"{operation}. Call InvokeEndpoint with a TargetModel."
        )

    def _check_endpoint(self, endpoint_name: str) -> None:
        validation.check_endpoint_name(endpoint_name)
        if endpoint_name != self.identity.name:
            raise ValidationError(
                f"Endpoint {endpoint_name} of account {self.identity.account_id} not found."
            )

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        started = time.perf_counter()
        arrived = time.time() if self.observer is not None else 0.0
        self.metrics.invocations.inc()
        # CloudWatch's InvocationsPerInstance: invocations divided by the instance count.
        self.metrics.invocations_per_instance.inc(1 / len(self.fleet))
        leases: list[Lease] = []
        routed: list[int] = []
        try:
            response, model_s = await self._invoke(
                request, started + self.options.deadline_s, leases, routed
            )
        except SageMakerError as error:
            self._count_error(error)
            self._observe(request, arrived, error.status, leases, routed, started, 0.0)
            raise
        self.metrics.model_latency.observe(model_s)
        # CloudWatch: OverheadLatency = total - ModelLatency (the wait for a load included).
        self.metrics.overhead_latency.observe(max(0.0, time.perf_counter() - started - model_s))
        self._observe(request, arrived, 200, leases, routed, started, model_s)
        return response

    def _observe(
        self,
        request: InvokeRequest,
        arrived: float,
        status: int,
        leases: list[Lease],
        routed: list[int],
        started: float,
        model_s: float,
    ) -> None:
        if self.observer is None:
            return
        lease = leases[-1] if leases else None
        waited = time.perf_counter() - started if lease is None else lease.waited_s
        hit = None if lease is None else lease.cache_hit
        target = request.target_model or ""
        download_s = None if lease is None else lease.download_s
        load_s = None if lease is None else lease.load_s
        instance = None if lease is None else lease.instance
        # Taken in the event-loop step that released the lease: a replay orders this end
        # against the loads and unloads around it.
        done_s = None if lease is None else time.perf_counter() - started
        self.observer(
            InvocationRecord(
                arrived,
                target,
                status,
                hit,
                waited,
                model_s,
                download_s=download_s,
                load_s=load_s,
                instance=instance,
                routed=routed[-1] if routed else None,
                done_s=done_s,
            )
        )

    def _count_error(self, error: SageMakerError) -> None:
        """Invocation4XX/5XXErrors count the model's status for a ModelError (a timeout, 0,
        counts as 5XX); the gateway's own refusals count by the status it answers."""
        status = error.status
        if isinstance(error, ModelError):
            self.metrics.invocation_model_errors.inc()
            status = error.original_status if error.original_status >= 400 else 500
        if status >= 500:
            self.metrics.invocation_5xx_errors.inc()
        else:
            self.metrics.invocation_4xx_errors.inc()

    async def _invoke(
        self, request: InvokeRequest, deadline: float, leases: list[Lease], routed: list[int]
    ) -> tuple[InvokeResponse, float]:
        identity = self.identity
        self._check_endpoint(request.endpoint_name)
        target = validation.check_target_model(request.target_model, request.request_id)
        validation.check_body_size(len(request.body))
        validation.check_optional_headers(
            request.custom_attributes,
            request.inference_id,
            request.target_variant,
            content_type=request.content_type,
            accept=request.accept,
            session_id=request.session_id,
            prefix_aware_id=request.prefix_aware_id,
        )
        validation.check_not_multi_model_features(
            identity.name,
            request.inference_component,
            request.target_container_hostname,
            request.enable_explanations,
        )
        if request.target_variant is not None and request.target_variant != identity.variant_name:
            raise ValidationError(
                f"Target variant {request.target_variant} not found for endpoint {identity.name}."
            )
        try:
            try:
                return await self._forward(target, request, deadline, leases, routed)
            except ModelNotFound:
                # The container lost the model behind the cache's back; it loads again once.
                return await self._forward(target, request, deadline, leases, routed)
        except SageMakerError:
            raise
        except Exception as error:
            translated = self._translate(error, target)
            if not leases and not isinstance(error, ModelNotReady):
                # No lease: the download, extraction or load failed, which the `up` console
                # should show (the client only sees its own error).
                log.warning("%s could not be loaded: %s", target, _one_line(translated.message))
            raise translated from error

    async def _forward(
        self,
        target: str,
        request: InvokeRequest,
        deadline: float,
        leases: list[Lease],
        routed: list[int],
    ) -> tuple[InvokeResponse, float]:
        """Lease the model and pass the bytes through, both within the request's deadline;
        returns (answer, model seconds) and appends the lease to `leases` and the instance
        it picked to `routed`."""
        # Routing and the lease's request to the cache happen in one step of the event loop.
        member = self.fleet.pick(target)
        routed.append(member.index)
        cache, client = member.cache, member.client
        wait_s = min(cache.ready_timeout_s, max(0.0, deadline - time.perf_counter()))
        async with cache.acquire(target, timeout_s=wait_s) as lease:
            leases.append(lease)
            self.metrics.count_cache_lookup(lease.cache_hit, member.index)
            self.metrics.count_model_invocation(target)
            control = client.control_calls
            busy_at_send, started_before = control.in_flight, control.started
            sent = time.perf_counter()
            try:
                result = await self._call_container(client, lease, target, request, deadline)
            except InsufficientMemory:
                # As on SageMaker: a 507 makes the platform unload unused models; retry once.
                if not await cache.make_room(lease, "container answered 507 on invoke"):
                    raise
                result = await self._call_container(client, lease, target, request, deadline)
            except ModelNotFound:
                cache.mark_not_loaded(lease)
                raise
            model_s = time.perf_counter() - sent
            if busy_at_send or control.in_flight or control.started != started_before:
                # Triton may have held this call behind the load/unload (README, fidelity).
                self.metrics.invocations_during_transitions.inc()
                self.metrics.model_latency_during_transitions.observe(model_s)
            return self._success(result), model_s

    async def _call_container(
        self,
        client: ContainerClient,
        lease: Lease,
        target: str,
        request: InvokeRequest,
        deadline: float,
    ) -> InvokeResult:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise RuntimeTimeout(f"the {self.options.deadline_s:.0f} s deadline passed")
        return await client.invoke(
            lease.name,
            target,
            request.body,
            request.content_type,
            request.accept,
            request.custom_attributes,
            timeout_s=remaining,
            session_id=request.session_id,
        )

    def _success(self, result: InvokeResult) -> InvokeResponse:
        return InvokeResponse(
            body=result.body,
            content_type=result.content_type,
            custom_attributes=result.custom_attributes,
            variant_name=self.identity.variant_name,
            new_session_id=result.new_session_id,
            closed_session_id=result.closed_session_id,
        )

    def _verbatim(self, error: ContainerError, target: str) -> str:
        """The container's body as sent (SageMaker quotes full JSON and HTML pages); the log
        gets it whole (up to `error_body_limit_bytes`), the error its first 2048 characters."""
        if not error.body:
            return error.message
        limit = self.options.error_body_limit_bytes
        text = error.body[:limit].decode(errors="replace")
        logged = text
        if len(error.body) > limit:
            logged += f"... [{len(error.body) - limit} more bytes not kept]"
        log.info(
            "%s: the container answered %d with %d bytes: %s",
            target,
            error.status_code,
            len(error.body),
            logged,
        )
        return text

    def _model_error(self, status: int, message: str) -> ModelError:
        kind = "client" if 400 <= status < 500 else "server"
        code = "CLIENT_ERROR_FROM_MODEL" if kind == "client" else "INTERNAL_FAILURE_FROM_MODEL"
        head = f'Received {kind} error ({status}) from model with message "'
        tail = (
            f'". See {self.identity.log_location} in account {self.identity.account_id} '
            "for more information."
        )
        # Cut inside the quotes so the frame (status, where the log is) survives the cap.
        room = max(0, MESSAGE_MAX_CHARS - len(head) - len(tail))
        return ModelError(
            head + cut_text(message, room) + tail,
            error_code=code,
            original_status=status,
            original_message=cut_text(message),
            log_stream_arn=self.identity.log_stream_arn,
        )

    def _translate(self, error: Exception, target: str) -> SageMakerError:
        if isinstance(error, ContainerError):
            return self._model_error(error.status_code, self._verbatim(error, target))
        if isinstance(error, ModelNotReady):
            return ModelNotReadyException(str(error))
        if isinstance(error, ModelLoadTimeout):
            return InternalFailure(str(error))
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
                f'Received server error (0) from model with message "{_TIMEOUT_MESSAGE}". '
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


def _one_line(text: str, limit: int = 500) -> str:
    """A log line: whitespace collapsed, cut at `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
