"""Prometheus metrics of one server, on its own registry (several servers may share a process in tests)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LATENCY_BUCKETS_SEC = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters and histograms: requests and latency per RPC, rejections, batches, cache results, jobs, reloads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("avlearn_requests_total", "RPCs finished, by method and status code", ["method", "code"], registry=r)
        self.latency = Histogram("avlearn_request_seconds", "RPC latency, by method", ["method"], buckets=_LATENCY_BUCKETS_SEC, registry=r)
        self.inflight = Gauge("avlearn_inflight_requests", "RPCs admitted and not finished, running or waiting (counted against max_queue)", registry=r)
        self.rejected = Counter("avlearn_rejected_total", "RPCs refused before running, by reason (queue_full, deadline, auth)", ["reason"], registry=r)
        self.batch_size = Histogram(
            "avlearn_batch_size", "items per batch, by kind (image, audio, localize, search)", ["kind"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_splits = Counter("avlearn_batch_splits_total", "batches that failed whole and were re-run one item at a time, by kind", ["kind"], registry=r)
        self.cache = Counter("avlearn_cache_total", "query-cache lookups, by result (hit, miss, error)", ["result"], registry=r)
        self.abandoned = Counter("avlearn_abandoned_total", "queries stopped between stages (client gone or deadline passed)", ["method", "stage"], registry=r)
        self.jobs = Counter("avlearn_jobs_total", "embed-job transitions, by new state", ["state"], registry=r)
        self.reloads = Counter("avlearn_reloads_total", "bundle reloads, by result", ["result"], registry=r)
        self._http: Any = None

    def on_batch(self, kind: str, size: int, split: bool) -> None:
        """The batchers' hook (services.batching)."""
        self.batch_size.labels(kind).observe(size)
        if split:
            self.batch_splits.labels(kind).inc()

    def start_http(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve /metrics over HTTP; returns the bound port (``port=0`` picks a free one)."""
        self._http, _ = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._http.server_address[1])

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def text(self) -> str:
        """The exposition text (what /metrics serves)."""
        return generate_latest(self.registry).decode()
