"""``serve(settings) -> ServerHandle``: the gRPC server with health, reflection, metrics, cache and jobs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avlearn_proto import service_pb2, service_pb2_grpc
from services.cache import QueryCache, make_cache
from services.engine import Engine, EngineHolder, open_bundle
from services.gate import ComputeGate, default_compute_slots
from services.interceptors import SERVICE, AuthInterceptor, MetricsInterceptor, OverloadInterceptor, RequestIdInterceptor
from services.job_store import JobStore, make_job_store
from services.jobs import JobRunner
from services.metrics import Metrics
from services.query_media import MediaDecoder
from services.replicas import Replica, ReplicaSync
from services.servicer import AvlearnServicer
from services.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServerHandle:
    """A running server. ``port`` is the bound port (useful with ``Settings(port=0)``)."""

    server: grpc.Server
    port: int
    metrics_port: int | None
    servicer: AvlearnServicer
    health: health.HealthServicer
    metrics: Metrics
    holder: EngineHolder
    cache: QueryCache
    store: JobStore
    runner: JobRunner | None
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
        self.health.enter_graceful_shutdown()
        self.servicer.stopping.set()
        if self.runner is not None:
            self.runner.stop()
        if self.sync is not None:
            self.sync.stop()
        self.server.stop(grace_sec).wait()
        self.holder.close()
        self.metrics.stop_http()
        for closable in (self.cache, self.store):
            try:
                closable.close()
            except Exception as exc:  # best-effort cleanup
                log.debug("close failed: %s", exc)

    def wait(self) -> None:
        self.server.wait_for_termination()

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
    bundle = open_bundle(Path(settings.bundle), embedder, strict_checkpoint=settings.strict_checkpoint) if settings.bundle and embedder is not None else None
    decoder = MediaDecoder(settings.limits, safe=settings.safe_decode, timeout_sec=settings.decode_timeout_sec)
    gate = ComputeGate(settings.compute_slots or default_compute_slots())
    holder = EngineHolder(Engine(embedder, bundle, Path(settings.bundle) if settings.bundle else None, settings.limits, decoder, gate))
    cache = make_cache(settings.redis_url, max_items=settings.cache_size, ttl_sec=settings.cache_ttl_sec)
    store = make_job_store(settings.redis_url, settings.job_db_path)
    runner = None
    if settings.job_slots > 0 and settings.checkpoint is not None:
        runner = JobRunner(store, slots=settings.job_slots, lease_sec=settings.job_lease_sec, on_state=lambda s: metrics.jobs.labels(s).inc())

    interceptors = [RequestIdInterceptor(), MetricsInterceptor(metrics)]
    if settings.auth_token:
        interceptors.append(AuthInterceptor(settings.auth_token, all_rpcs=settings.auth_all, metrics=metrics))
    interceptors.append(OverloadInterceptor(settings.max_concurrent, metrics))
    max_bytes = settings.limits.max_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", int(replica is not None)),
        ],
        # past this many RPCs (running + queued for a thread), gRPC itself answers RESOURCE_EXHAUSTED
        maximum_concurrent_rpcs=settings.max_workers,
    )
    sync = ReplicaSync(replica).follow(holder, strict_checkpoint=settings.strict_checkpoint, metrics=metrics) if replica is not None else None
    servicer = AvlearnServicer(holder, cache, store, settings, metrics, runner, sync)
    service_pb2_grpc.add_AvlearnServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (service_pb2.DESCRIPTOR.services_by_name["AvlearnService"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    server.start()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_port = metrics.start_http(settings.metrics_port, addr=settings.host) if settings.metrics_port is not None else None
    if runner is not None:
        runner.start()
    log.info(
        "serving on %s:%d (bundle %s, metrics %s, %s)",
        settings.host,
        port,
        holder.current.bundle_id or "-",
        metrics_port,
        "redis" if settings.redis_url else "embedded stores",
    )
    return ServerHandle(server, port, metrics_port, servicer, health_servicer, metrics, holder, cache, store, runner, sync)


def run_until_signal(handle: ServerHandle, grace_sec: float, keep_running: Callable[[], bool] | None = None) -> None:
    """Block until SIGINT/SIGTERM (or until ``keep_running()``, asked every second, is false), then stop gracefully."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0 if keep_running else None):
        if keep_running is not None and not keep_running():
            break
    log.info("shutting down (grace %.1f s)", grace_sec)
    handle.stop(grace_sec)


def run_worker(settings: Settings) -> None:
    """A job worker without a gRPC server: leases and runs embed jobs from the shared store until a signal."""
    store = make_job_store(settings.redis_url, settings.job_db_path)
    runner = JobRunner(store, slots=max(1, settings.job_slots), lease_sec=settings.job_lease_sec).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    log.info("embed worker %s running (%s)", runner.owner, "redis" if settings.redis_url else settings.job_db_path)
    done.wait()
    runner.stop()
    store.close()
