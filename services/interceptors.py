"""Server interceptors (grpc.aio): request ids, metrics, auth, admission.

Each wraps the method handler's behaviour (unary or server-streaming) with one concern; the
wrapped handler is built once per method and reused. Order (outermost first): request id →
metrics → auth → admission, so a refused call is still counted and tagged.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.gate import DEADLINE, QUEUE_FULL, Admission
from services.metrics import Metrics

log = logging.getLogger(__name__)

SERVICE = "avlearn.v1.AvlearnService"
MUTATING = frozenset({f"/{SERVICE}/SubmitEmbedJob", f"/{SERVICE}/CancelJob", f"/{SERVICE}/ReloadIndex"})
# Health and reflection stay open (probes, grpcurl) and are never refused for load.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

Handler = Callable[[Any, Any], Any]  # (request, context) -> awaitable response | async iterator


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


def _is_open(method: str) -> bool:
    return method.startswith(OPEN_PREFIXES)


async def _unary(fn: Handler, request: Any, context: Any) -> Any:
    out = fn(request, context)
    return await out if inspect.isawaitable(out) else out


async def _stream(fn: Handler, request: Any, context: Any) -> AsyncIterator[Any]:
    out = fn(request, context)
    if hasattr(out, "__aiter__"):
        async for item in out:
            yield item
    else:
        for item in out:
            yield item


def wrap_handler(handler: grpc.RpcMethodHandler | None, method: str, interceptor: _Interceptor) -> grpc.RpcMethodHandler | None:
    """A copy of ``handler`` whose behaviour runs inside ``interceptor.around`` (``around_stream`` for server streams)."""
    if handler is None:
        return None
    ser = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary(request, context):
            return await interceptor.around(inner, request, context, method)

        return grpc.unary_unary_rpc_method_handler(unary, **ser)
    if handler.unary_stream:
        inner_stream = handler.unary_stream

        async def stream(request, context):
            async for item in interceptor.around_stream(inner_stream, request, context, method):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, **ser)
    return handler  # client/bidi streams (reflection): passed through


class _Interceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
        method = handler_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = wrap_handler(await continuation(handler_call_details), method, self)
            if wrapped is not None:
                self._wrapped[method] = wrapped
        return wrapped

    async def around(self, fn: Handler, request: Any, context: Any, method: str) -> Any:  # pragma: no cover - overridden
        return await _unary(fn, request, context)

    async def around_stream(self, fn: Handler, request: Any, context: Any, method: str) -> AsyncIterator[Any]:
        async for item in _stream(fn, request, context):
            yield item


class RequestIdInterceptor(_Interceptor):
    """Takes ``x-request-id`` from the metadata (or makes one), logs with it and returns it as trailing metadata."""

    @staticmethod
    def _rid(context) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id" and value:
                return str(value)[:128]
        return uuid.uuid4().hex

    async def around(self, fn, request, context, method):
        rid = self._rid(context)
        token = request_id.set(rid)
        context.set_trailing_metadata((("x-request-id", rid),))
        try:
            return await _unary(fn, request, context)
        finally:
            request_id.reset(token)

    async def around_stream(self, fn, request, context, method):
        rid = self._rid(context)
        context.set_trailing_metadata((("x-request-id", rid),))
        request_id.set(rid)  # the stream's own task: nothing to restore
        async for item in _stream(fn, request, context):
            yield item


def ended_code(context: Any, exc: BaseException | None) -> str:
    """The status name a call ended with (``exc``: what its handler raised, None = returned)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode) and (code != grpc.StatusCode.OK or exc is None):
        return code.name
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError):
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN"


class MetricsInterceptor(_Interceptor):
    """Counts every RPC by method and final status code and records its latency."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics
        self._counters: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def _record(self, method: str, context, start: float, exc: BaseException | None) -> None:
        elapsed = time.perf_counter() - start
        m = _method_name(method)
        name = ended_code(context, exc)
        counter = self._counters.get((m, name))
        if counter is None:
            counter = self._counters[(m, name)] = self.metrics.requests.labels(m, name)
        counter.inc()
        latency = self._latency.get(m)
        if latency is None:
            latency = self._latency[m] = self.metrics.latency.labels(m)
        latency.observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %.1f ms [%s]", m, name, 1000 * elapsed, request_id.get())

    async def around(self, fn, request, context, method):
        start = time.perf_counter()
        try:
            result = await _unary(fn, request, context)
        except BaseException as exc:
            self._record(method, context, start, exc)
            raise
        self._record(method, context, start, None)
        return result

    async def around_stream(self, fn, request, context, method):
        start = time.perf_counter()
        try:
            async for item in _stream(fn, request, context):
                yield item
        except BaseException as exc:
            self._record(method, context, start, exc)
            raise
        self._record(method, context, start, None)


class AuthInterceptor(_Interceptor):
    """Requires ``authorization: Bearer <token>`` on mutating RPCs (every RPC with ``all_rpcs``)."""

    def __init__(self, token: str, *, all_rpcs: bool = False, metrics: Metrics | None = None) -> None:
        super().__init__()
        self._token = token.encode()
        self.all_rpcs = all_rpcs
        self.metrics = metrics

    async def _check(self, context, method: str) -> None:
        if _is_open(method) or not (self.all_rpcs or method in MUTATING):
            return
        given = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                given = str(value)
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            if self.metrics:
                self.metrics.rejected.labels("auth").inc()
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' metadata entry is required for " + _method_name(method)
            )

    async def around(self, fn, request, context, method):
        await self._check(context, method)
        return await _unary(fn, request, context)

    async def around_stream(self, fn, request, context, method):
        await self._check(context, method)
        async for item in _stream(fn, request, context):
            yield item


class AdmissionInterceptor(_Interceptor):
    """Admits unary calls through the bounded queue (``services.gate.Admission``); a refusal is
    RESOURCE_EXHAUSTED, counted in ``avlearn_rejected_total{reason}``.

    Health checks, reflection and server streams (WatchJob: long-lived, cheap polling) are not counted.
    """

    def __init__(self, admission: Admission, metrics: Metrics | None = None) -> None:
        super().__init__()
        self.admission = admission
        self.metrics = metrics

    def _refusal(self, reason: str, method: str, remaining: float | None) -> str:
        if reason == QUEUE_FULL:
            return f"server busy: its queue is full ({self.admission.capacity} calls admitted); retry later"
        assert reason == DEADLINE
        fastest = self.admission.fastest_sec(method)
        left = f"{1000 * max(0.0, remaining or 0.0):.0f} ms"
        if fastest is None or (remaining is not None and remaining <= 0):
            return f"the call's deadline has passed ({left} left); allow more time"
        return f"the call's deadline ({left} left) is shorter than the fastest recent {method} ({1000 * fastest:.0f} ms); allow more time"

    async def around(self, fn, request, context, method):
        if _is_open(method):
            return await _unary(fn, request, context)
        name = _method_name(method)
        remaining = context.time_remaining()
        reason = self.admission.admit(name, remaining)
        if reason is not None:
            if self.metrics:
                self.metrics.rejected.labels(reason).inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._refusal(reason, name, remaining))
        if self.metrics:
            self.metrics.inflight.set(self.admission.admitted)
        start = time.perf_counter()
        ok = False
        try:
            result = await _unary(fn, request, context)
            ok = True
            return result
        finally:
            self.admission.done(name, time.perf_counter() - start, ok)
            if self.metrics:
                self.metrics.inflight.set(self.admission.admitted)
