"""The supervisor of ``avlearn serve --processes N``: starts the replicas, forwards signals
(SIGTERM/SIGINT: drain and stop; SIGHUP: each replica reloads its bundle path), stops them together.

The replicas and how they stay in step are described in services.replicas.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.replicas import Replica
from services.server import run_until_signal, serve
from services.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_SEC = 600.0  # loading a model and a bundle on a slow disk


def replica_settings(settings: Settings, index: int, port: int) -> Settings:
    """Settings of replica ``index``: the shared ``port``, jobs only on replica 0, metrics on ``metrics_port + index``."""
    metrics_port = settings.metrics_port
    if metrics_port:  # None = off, 0 = a free port each
        metrics_port += index
    return replace(settings, port=port, job_slots=settings.job_slots if index == 0 else 0, metrics_port=metrics_port)


def _replica_main(settings: Settings, replica: Replica, grace_sec: float, ready: Any, parent_pid: int, log_level: int) -> None:
    """Entry point of a replica process: serve until SIGTERM/SIGINT, or until the supervisor is gone."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s [replica {replica.index}] %(name)s: %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until run_until_signal reloads on it: never die of it while starting
    try:
        handle = serve(settings, replica=replica)
    except BaseException as exc:
        ready.put(("failed", replica.index, f"{type(exc).__name__}: {exc}"))
        raise
    ready.put(("ready", replica.index, handle.port, handle.metrics_port))

    def supervised() -> bool:
        if os.getppid() == parent_pid:
            return True
        log.warning("replica %d: the supervisor is gone; stopping", replica.index)
        return False

    run_until_signal(handle, grace_sec, keep_running=supervised)


def _wait_ready(ready: Any, procs: list[Any], count: int) -> list[tuple]:
    got: list[tuple] = []
    deadline = time.monotonic() + READY_TIMEOUT_SEC
    while len(got) < count:
        try:
            msg = ready.get(timeout=1.0)
        except queue.Empty:
            if any(p.exitcode is not None for p in procs):
                raise RuntimeError("a replica exited while starting (see its log above)") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas not ready within {READY_TIMEOUT_SEC:.0f} s") from None
            continue
        if msg[0] == "failed":
            raise RuntimeError(f"replica {msg[1]} failed to start: {msg[2]}")
        got.append(msg)
    return got


def run_replicas(settings: Settings, processes: int, grace_sec: float) -> int:
    """Serve with ``processes`` replica processes on one port until SIGINT/SIGTERM; returns the exit code."""
    if processes < 2:
        raise ValueError(f"run_replicas needs processes >= 2, got {processes}")
    ctx = multiprocessing.get_context("spawn")  # gRPC and torch threads do not survive fork
    ready = ctx.Queue()
    sync_dir = Path(tempfile.mkdtemp(prefix="avlearn-replicas-"))
    procs: list[Any] = []

    def start(index: int, port: int) -> None:
        p = ctx.Process(
            target=_replica_main, args=(replica_settings(settings, index, port), Replica(index, processes, sync_dir), grace_sec, ready, os.getpid(), logging.getLogger().getEffectiveLevel()),
            name=f"avlearn-replica-{index}", daemon=False,
        )  # fmt: skip
        p.start()
        procs.append(p)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())

    def forward_hup(*_: Any) -> None:  # each replica reopens its bundle path
        log.info("SIGHUP: asking %d replicas to reload their bundle", sum(p.exitcode is None for p in procs))
        for p in procs:
            if p.exitcode is None and p.pid is not None:
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGHUP, forward_hup)
    code = 0
    try:
        start(0, settings.port)
        ((_, _, port, metrics0),) = _wait_ready(ready, procs, 1)
        for i in range(1, processes):
            start(i, port)
        rest = _wait_ready(ready, procs, processes - 1)
        metrics = sorted([(0, metrics0)] + [(m[1], m[3]) for m in rest])
        shown = ", metrics on " + " ".join(f":{m}" for _, m in metrics) if metrics0 else ""
        print(f"avlearn server listening on {settings.host}:{port} ({processes} processes){shown}", flush=True)
        while not done.wait(0.5):
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                log.error("replica %s exited with code %s; stopping the server", dead[0].name, dead[0].exitcode)
                code = 1
                break
    except (RuntimeError, TimeoutError) as exc:
        log.error("%s", exc)
        code = 1
    finally:
        for p in procs:
            if p.exitcode is None:
                p.terminate()  # SIGTERM: graceful stop in the replica
        for p in procs:
            p.join(grace_sec + 10)
            if p.exitcode is None:
                p.kill()
                p.join()
        shutil.rmtree(sync_dir, ignore_errors=True)
    return code
