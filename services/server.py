"""``serve(settings) -> ServerHandle``: the gRPC server (grpc.aio) with health, reflection, metrics, cache and jobs.

One event loop per process (``event_loop()``: a daemon thread, started on first use) runs every
server of the process; the RPC handlers are coroutines, so thousands of concurrent calls cost
a task each. Model and search work runs on the scheduler's bounded executors, with dynamic
batching (``services.scheduler``); calls are admitted through a bounded queue with per-call
deadlines (``services.gate``). ``serve()`` itself is a plain function that returns once the
server listens: callers (the CLI, tests, the demo) need no asyncio.

Signals (``run_until_signal``): SIGTERM/SIGINT drain in-flight calls for the grace period, then
stop; SIGHUP reopens the bundle path being served (a reload; it never stops the server). Both
are logged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avlearn_proto import service_pb2, service_pb2_grpc
from services.cache import QueryCache, make_cache
from services.engine import Engine
from services.errors import user_message
from services.gate import Admission, default_compute_slots, default_workers
from services.holder import EngineHolder, open_bundle
from services.interceptors import MUTATING, SERVICE, AdmissionInterceptor, AuthInterceptor, MetricsInterceptor, RequestIdInterceptor
from services.job_store import JobStore, make_job_store
from services.jobs import JobRunner
from services.metrics import Metrics
from services.query_media import MediaDecoder
from services.replicas import Replica, ReplicaSync
from services.scheduler import Scheduler
from services.servicer import AvlearnServicer
from services.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for gRPC servers: one, running in a daemon thread, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run, name="avlearn-loop", daemon=True).start()
            started.wait()
            _loop = loop
        return _loop


def on_loop(coro: Coroutine[Any, Any, T], timeout_sec: float | None = None) -> T:
    """Run ``coro`` on the server loop from another thread and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, event_loop()).result(timeout_sec)


@dataclass
class ServerHandle:
    """A running server. ``port`` is the bound port (useful with ``Settings(port=0)``)."""

    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    servicer: AvlearnServicer
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    metrics: Metrics
    holder: EngineHolder
    cache: QueryCache
    store: JobStore
    runner: JobRunner | None
    scheduler: Scheduler
    admission: Admission
    sync: ReplicaSync | None = None
    _stopped: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace_sec: float | None = 5.0) -> None:
        """Graceful shutdown: report NOT_SERVING, refuse new RPCs, let in-flight ones finish for
        ``grace_sec``, stop the job runner (its jobs stay resumable), then close the bundle and stores."""
        if self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        in_flight = self.admission.admitted
        self.servicer.stopping.set()
        on_loop(self.health.enter_graceful_shutdown())
        if self.runner is not None:
            self.runner.stop()
        if self.sync is not None:
            self.sync.stop()
        on_loop(self.server.stop(grace_sec))
        self.scheduler.close()
        self.holder.close()
        self.metrics.stop_http()
        for closable in (self.cache, self.store):
            try:
                closable.close()
            except Exception as exc:  # best-effort cleanup
                log.debug("close failed: %s", exc)
        log.info("server on port %d stopped in %.2f s (%d calls were in flight when it began)", self.port, time.monotonic() - t0, in_flight)

    def wait(self) -> None:
        on_loop(self.server.wait_for_termination())

    def reload(self) -> bool:
        """Reopen the bundle path being served (SIGHUP); a failure is logged and the current bundle stays. True on success."""
        path = self.holder.current.bundle_path
        if path is None:
            log.warning("SIGHUP: no bundle path to reload (start the server with --bundle)")
            return False
        try:
            old, new = self.servicer.reload(None, publish=False)
        except Exception as exc:
            log.error("SIGHUP: reloading %s failed, still serving bundle %s: %s", path, self.holder.current.bundle_id or "-", user_message(str(exc)))
            return False
        log.info("SIGHUP: reloaded %s (bundle %s -> %s)", path, old or "-", new)
        return True

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def load_embedder(settings: Settings) -> Any:
    """The Embedder of ``settings.checkpoint`` (+ localizer), or None without a checkpoint."""
    if settings.checkpoint is None:
        return None
    from avlearn.embed import Embedder

    loc = str(settings.localizer_checkpoint) if settings.localizer_checkpoint else None
    return Embedder.from_checkpoint(str(settings.checkpoint), localizer=loc, device=settings.device)


def serve(settings: Settings, *, embedder: Any | None = None, replica: Replica | None = None) -> ServerHandle:
    """Start the server (non-blocking) and return its handle.

    Args:
        settings: see :class:`services.settings.Settings`; ``port=0`` binds a free port.
        embedder: an already loaded Embedder to share (tests, benchmarks); default: load
            ``settings.checkpoint``.
        replica: this server is one of several on the same port (``services.replicas``): it binds
            with SO_REUSEPORT and follows / publishes bundle reloads through ``replica.sync_dir``.
    """
    metrics = Metrics()
    embedder = embedder if embedder is not None else load_embedder(settings)
    mmap = not settings.index_in_ram
    bundle = (
        open_bundle(Path(settings.bundle), embedder, strict_checkpoint=settings.strict_checkpoint, mmap=mmap)
        if settings.bundle and embedder is not None
        else None
    )
    decoder = MediaDecoder(settings.limits, safe=settings.safe_decode, timeout_sec=settings.decode_timeout_sec)
    holder = EngineHolder(Engine(embedder, bundle, Path(settings.bundle) if settings.bundle else None, settings.limits, decoder), mmap=mmap)
    slots = settings.compute_slots or default_compute_slots()
    workers = settings.max_workers or default_workers()
    scheduler = Scheduler(
        workers=workers, compute_slots=slots, max_batch=settings.max_batch, max_batch_delay_sec=settings.max_batch_delay_ms / 1000, on_batch=metrics.on_batch
    )
    admission = Admission(settings.max_queue)
    cache = make_cache(settings.redis_url, max_items=settings.cache_size, ttl_sec=settings.cache_ttl_sec)
    store = make_job_store(settings.redis_url, settings.job_db_path)
    runner = None
    if settings.job_slots > 0 and settings.checkpoint is not None:
        runner = JobRunner(store, slots=settings.job_slots, lease_sec=settings.job_lease_sec, on_state=lambda s: metrics.jobs.labels(s).inc())

    interceptors: list[grpc.aio.ServerInterceptor] = [RequestIdInterceptor(), MetricsInterceptor(metrics)]
    if settings.auth_token:
        interceptors.append(AuthInterceptor(settings.auth_token, all_rpcs=settings.auth_all, metrics=metrics))
    interceptors.append(AdmissionInterceptor(admission, metrics))
    sync = ReplicaSync(replica).follow(holder, strict_checkpoint=settings.strict_checkpoint, metrics=metrics) if replica is not None else None
    servicer = AvlearnServicer(holder, cache, store, settings, metrics, scheduler, runner, sync)

    async def start() -> tuple[grpc.aio.Server, Any, int]:
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", int(replica is not None)),
            ],
            # no maximum_concurrent_rpcs: gRPC would refuse past it before any interceptor could count the refusal
        )
        service_pb2_grpc.add_AvlearnServiceServicer_to_server(servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (service_pb2.DESCRIPTOR.services_by_name["AvlearnService"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        try:
            port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        except RuntimeError as exc:
            raise OSError(f"could not bind {settings.host}:{settings.port}: {exc}") from None
        if port == 0:
            raise OSError(f"could not bind {settings.host}:{settings.port}")
        await server.start()
        for name in ("", SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        return server, health_servicer, port

    try:
        server, health_servicer, port = on_loop(start())
    except BaseException:
        if sync is not None:
            sync.stop()
        scheduler.close()
        raise
    metrics_port = metrics.start_http(settings.metrics_port, addr=settings.host) if settings.metrics_port is not None else None
    if runner is not None:
        runner.start()
    log.info(
        "serving on %s:%d (bundle %s, metrics %s, %s; queue %d calls, batches of up to %d (delay %g ms), %d model passes at once, %d workers)",
        settings.host,
        port,
        holder.current.bundle_id or "-",
        metrics_port,
        "redis" if settings.redis_url else "embedded stores",
        settings.max_queue,
        settings.max_batch,
        settings.max_batch_delay_ms,
        slots,
        workers,
    )
    log_auth(settings)
    return ServerHandle(server, port, metrics_port, servicer, health_servicer, metrics, holder, cache, store, runner, scheduler, admission, sync)


def log_auth(settings: Settings) -> None:
    """Say at start-up whether the mutating calls are open or token-protected."""
    mutating = ", ".join(sorted(m.rsplit("/", 1)[-1] for m in MUTATING))
    if not settings.auth_token:
        log.warning("mutating calls (%s) are OPEN to every client: no --auth-token-file was given", mutating)
    elif settings.auth_all:
        log.info("every call needs the bearer token (--auth-all); health and reflection stay open")
    else:
        log.info("mutating calls (%s) need the bearer token (--auth-token-file); queries are open", mutating)


_SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def wait_for_signals(on_reload: Callable[[], Any], keep_running: Callable[[], bool] | None = None) -> str:
    """Block until SIGINT/SIGTERM (returns its name) or until ``keep_running()``, asked every second,
    is false (returns ""); each SIGHUP meanwhile calls ``on_reload()``. Restores the previous handlers."""
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    previous = {sig: signal.signal(sig, lambda signum, _frame: signals.put(signum)) for sig in _SIGNAL_NAMES}
    try:
        while True:
            try:
                sig = signals.get(timeout=1.0)
            except queue.Empty:
                if keep_running is not None and not keep_running():
                    return ""
                continue
            if sig == signal.SIGHUP:
                log.info("SIGHUP received: reloading")
                on_reload()
                continue
            return _SIGNAL_NAMES.get(sig, str(sig))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until_signal(handle: ServerHandle, grace_sec: float, keep_running: Callable[[], bool] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until ``keep_running()``, asked every second, is false), then drain
    in-flight calls for ``grace_sec`` and stop; SIGHUP meanwhile reloads the bundle path (``ServerHandle.reload``)."""
    name = wait_for_signals(handle.reload, keep_running)
    log.info("%s: draining %d in-flight calls (grace %.1f s), then stopping", name or "stop", handle.admission.admitted, grace_sec)
    handle.stop(grace_sec)


def run_worker(settings: Settings) -> None:
    """A job worker without a gRPC server: leases and runs embed jobs from the shared store until a signal."""
    store = make_job_store(settings.redis_url, settings.job_db_path)
    runner = JobRunner(store, slots=max(1, settings.job_slots), lease_sec=settings.job_lease_sec).start()
    log.info("embed worker %s running (%s)", runner.owner, "redis" if settings.redis_url else settings.job_db_path)
    name = wait_for_signals(lambda: log.info("SIGHUP: an embed worker has no bundle to reload; ignored"))
    log.info("%s: stopping the embed worker (running jobs stay resumable)", name)
    runner.stop()
    store.close()
