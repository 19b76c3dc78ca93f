"""Server interceptors: request ids, metrics, auth, overload.

Each wraps the method handler's behaviour (unary or server-streaming) with one concern.
Order (outermost first): request id → metrics → auth → overload, so a refused call is
still counted and tagged.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable

import grpc

from services.metrics import Metrics

log = logging.getLogger(__name__)

SERVICE = "avlearn.v1.AvlearnService"
MUTATING = frozenset({f"/{SERVICE}/SubmitEmbedJob", f"/{SERVICE}/CancelJob", f"/{SERVICE}/ReloadIndex"})
# Health and reflection stay open (probes, grpcurl) and are never refused for load.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

Around = Callable[[Callable, object, grpc.ServicerContext, str], object]


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


def _is_open(method: str) -> bool:
    return method.startswith(OPEN_PREFIXES)


def wrap_handler(handler: grpc.RpcMethodHandler | None, method: str, around: Around, around_stream: Around) -> grpc.RpcMethodHandler | None:
    """A copy of ``handler`` whose behaviour runs inside ``around`` (or ``around_stream`` for server streams)."""
    if handler is None:
        return None
    ser = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        fn = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(lambda req, ctx: around(fn, req, ctx, method), **ser)
    if handler.unary_stream:
        fn = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(lambda req, ctx: around_stream(fn, req, ctx, method), **ser)
    return handler  # client/bidi streams: none in this API


class _Interceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        return wrap_handler(continuation(handler_call_details), method, self.around, self.around_stream)

    def around(self, fn, request, context, method):  # pragma: no cover - overridden
        return fn(request, context)

    def around_stream(self, fn, request, context, method):
        return self.around(fn, request, context, method)


class RequestIdInterceptor(_Interceptor):
    """Takes ``x-request-id`` from the metadata (or makes one), logs with it and returns it as trailing metadata."""

    @staticmethod
    def _rid(context) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id" and value:
                return str(value)[:128]
        return uuid.uuid4().hex

    def around(self, fn, request, context, method):
        rid = self._rid(context)
        token = request_id.set(rid)
        context.set_trailing_metadata((("x-request-id", rid),))
        try:
            return fn(request, context)
        finally:
            request_id.reset(token)

    def around_stream(self, fn, request, context, method):
        rid = self._rid(context)
        context.set_trailing_metadata((("x-request-id", rid),))
        token = request_id.set(rid)
        try:
            yield from fn(request, context)
        finally:
            try:
                request_id.reset(token)
            except ValueError:  # a generator resumed in another context
                pass


class MetricsInterceptor(_Interceptor):
    """Counts every RPC by method and final status code and records its latency."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, context, start: float, failed: bool) -> None:
        code = context.code() if hasattr(context, "code") else None
        name = code.name if isinstance(code, grpc.StatusCode) else ("UNKNOWN" if failed else "OK")
        m = _method_name(method)
        self.metrics.requests.labels(m, name).inc()
        self.metrics.latency.labels(m).observe(time.perf_counter() - start)
        log.debug("%s %s %.1f ms [%s]", m, name, 1000 * (time.perf_counter() - start), request_id.get())

    def around(self, fn, request, context, method):
        start = time.perf_counter()
        failed = True
        try:
            result = fn(request, context)
            failed = False
            return result
        finally:
            self._record(method, context, start, failed)

    def around_stream(self, fn, request, context, method):
        start = time.perf_counter()
        failed = True
        try:
            yield from fn(request, context)
            failed = False
        finally:
            self._record(method, context, start, failed)


class AuthInterceptor(_Interceptor):
    """Requires ``authorization: Bearer <token>`` on mutating RPCs (every RPC with ``all_rpcs``)."""

    def __init__(self, token: str, *, all_rpcs: bool = False, metrics: Metrics | None = None) -> None:
        self._token = token.encode()
        self.all_rpcs = all_rpcs
        self.metrics = metrics

    def _check(self, context, method: str) -> None:
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
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' metadata entry is required for " + _method_name(method))

    def around(self, fn, request, context, method):
        self._check(context, method)
        return fn(request, context)

    def around_stream(self, fn, request, context, method):
        self._check(context, method)
        yield from fn(request, context)


class OverloadInterceptor(_Interceptor):
    """At most ``max_concurrent`` unary RPCs run at once; the excess gets RESOURCE_EXHAUSTED immediately.

    Health checks, reflection and server streams (WatchJob: long-lived, cheap polling)
    are not counted.
    """

    def __init__(self, max_concurrent: int, metrics: Metrics | None = None) -> None:
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self.metrics = metrics

    def around(self, fn, request, context, method):
        if _is_open(method):
            return fn(request, context)
        if not self._slots.acquire(blocking=False):
            if self.metrics:
                self.metrics.rejected.labels("overload").inc()
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {self.max_concurrent} requests already in progress; retry later")
        if self.metrics:
            self.metrics.inflight.inc()
        try:
            return fn(request, context)
        finally:
            self._slots.release()
            if self.metrics:
                self.metrics.inflight.dec()

    def around_stream(self, fn, request, context, method):
        yield from fn(request, context)
