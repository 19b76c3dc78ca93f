"""Signals: SIGTERM drains in-flight calls within the grace period; SIGHUP reloads the bundle path and never stops the server."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time

from fixtures import Load, copy_bundle, png_bytes

from avlearn_client.client import Client
from avlearn_client.types import AvlearnError
from services.server import run_until_signal


def _send_when_handled(signals: list[tuple[int, float]], then=None) -> threading.Thread:
    """Send ``(signal, pause before it)`` to this process once run_until_signal handles SIGTERM (never to a
    default handler), then call ``then()``."""
    default = signal.getsignal(signal.SIGTERM)

    def run() -> None:
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGTERM) is default and time.monotonic() < deadline:
            time.sleep(0.01)
        for sig, pause in signals:
            time.sleep(pause)
            os.kill(os.getpid(), sig)
        if then is not None:
            then()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_sigterm_drains_a_call_in_flight(start_server, caplog):
    """A query in flight (waiting 1 s for its batch) when SIGTERM arrives is answered; calls after it are refused (UNAVAILABLE)."""
    srv = start_server(max_batch=8, max_batch_delay_ms=1000, cache_size=0)
    result: dict = {}

    def query() -> None:
        with Client(srv.address, retries=0, timeout_sec=10) as c:
            try:
                result["hits"] = c.search_audio_by_image(png_bytes(), k=2).hits
            except AvlearnError as exc:
                result["error"] = exc

    t = threading.Thread(target=query)
    t.start()
    deadline = time.monotonic() + 10
    while srv.admission.admitted < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    _send_when_handled([(signal.SIGTERM, 0.1)])
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="services.server"):
        run_until_signal(srv, grace_sec=5.0)
    elapsed = time.monotonic() - t0
    t.join(10)
    assert "error" not in result and len(result["hits"]) == 2, result
    assert elapsed < 4.0  # it stopped once the call was done, well inside the grace period
    with Client(srv.address, retries=0, timeout_sec=2) as c:
        try:
            c.health()
            raise AssertionError("the server still answers after SIGTERM")
        except AvlearnError as exc:
            assert exc.code == "UNAVAILABLE"
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("SIGTERM: draining 1 in-flight calls") for m in said), said
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))  # handlers restored


def test_sighup_reloads_and_a_failed_reload_keeps_serving(start_server, assets, tmp_path, caplog):
    """SIGHUP under load reopens the served path (a new version behind it is picked up); a SIGHUP whose
    reload fails is logged and the server keeps its bundle; no query fails."""
    path = copy_bundle(assets, tmp_path / "bundles" / "served", "first-version")
    srv = start_server(bundle=path, job_roots=(tmp_path / "bundles",))
    vec = srv.holder.current.bundle.vector("audio", int(srv.holder.current.bundle._indices["audio"].ids[0]))

    def query(c, rng):
        return c.search_audio_by_image(vector=vec, k=3)

    def replace_version(bundle_id: str | None) -> None:  # None: leave a broken bundle there
        shutil.rmtree(path)
        if bundle_id is None:
            path.mkdir()
        else:
            copy_bundle(assets, path, bundle_id)

    load = Load(srv.address, query, threads=3).__enter__()
    done = threading.Event()

    def stop_load() -> None:
        time.sleep(0.5)
        load.__exit__()  # the load ends before the server does
        done.set()

    sender = _send_when_handled([(signal.SIGHUP, 0.3), (signal.SIGHUP, 0.5)], then=stop_load)
    swapper = threading.Timer(0.15, replace_version, ("second-version",))
    breaker = threading.Timer(0.6, replace_version, (None,))
    swapper.start()
    breaker.start()
    with caplog.at_level(logging.INFO, logger="services.server"):
        run_until_signal(srv, grace_sec=2.0, keep_running=lambda: not done.is_set())
    sender.join(5)
    assert load.failures == [] and load.ok > 10
    assert load.bundle_ids == {"first-version", "second-version"}
    assert srv.holder.reloads == 1
    said = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("SIGHUP: reloaded") and "first-version -> second-version" in m for m in said) == 1, said
    assert sum(m.startswith("SIGHUP: reloading") and "failed, still serving bundle second-version" in m for m in said) == 1, said
    assert srv.metrics.reloads.labels("failed")._value.get() == 1
