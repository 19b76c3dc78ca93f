"""Several server processes on one port: ``avlearn serve --processes N``.

Python's synchronous gRPC server runs every call's Python — the poll loop, the interceptors,
the handler — under one GIL, so one process tops out near one core however many threads it
has (docs/benchmarks.md: a 1M-vector query costs 1.3 ms of server CPU under load, and the
server sits at 1.0 core). N replica processes each bind the port with ``SO_REUSEPORT`` and
the kernel spreads client connections over them.

What is shared and what is per replica:

- bundle files: each replica opens (memory-maps) the same bundle; pages are shared by the OS;
- job store (SQLite file or Redis): shared, so any replica answers GetJob / WatchJob /
  CancelJob; only replica 0 runs embed jobs (``job_slots``), the others run none;
- query cache: Redis (shared) or one in-process LRU per replica;
- Prometheus metrics: replica i serves ``/metrics`` on ``metrics_port + i``;
- ReloadIndex: the replica that takes the call reloads, then publishes the bundle path
  through :class:`ReplicaSync`; every other replica reloads it within ``poll_sec`` and the
  call returns once all have (zero failed queries: each replica swaps atomically).

The supervisor (:func:`run_replicas`) starts replica 0 first (it may bind port 0), then the
others on the port it got. SIGINT/SIGTERM are forwarded (graceful shutdown in each); a replica
that exits on its own stops the others and the supervisor exits 1, so an orchestrator restarts
the whole server. A replica whose supervisor disappears stops itself.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from avlearn.atomic import atomic_write_json
from services.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_SEC = 600.0  # loading a model and a bundle on a slow disk


class ReplicaSyncError(RuntimeError):
    """Another replica did not load a published bundle (in time, or at all)."""


@dataclass(frozen=True)
class Replica:
    """This process's place among the replicas: ``index`` of ``count``, sharing ``sync_dir``."""

    index: int
    count: int
    sync_dir: Path


class ReplicaSync:
    """Reload broadcast between the replicas of one server, through files in ``replica.sync_dir``.

    ``reload.json`` holds the latest published {"generation", "path", "bundle_id", "by"};
    ``ack-<i>.json`` holds {"generation", "bundle_id", "error"} of what replica i last did.
    """

    def __init__(self, replica: Replica, *, poll_sec: float = 0.1, timeout_sec: float = 120.0) -> None:
        self.replica = replica
        self.poll_sec = poll_sec
        self.timeout_sec = timeout_sec
        self.dir = Path(replica.sync_dir)
        self._seen = self._published().get("generation", 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- files -------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / "lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.dir / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write(self, name: str, value: dict[str, Any]) -> None:
        atomic_write_json(self.dir / name, value, indent=None)  # readers see the old or the new file, never half of one

    def _published(self) -> dict[str, Any]:
        return self._read("reload.json")

    def _ack(self, generation: int, bundle_id: str, error: str = "") -> None:
        self._write(f"ack-{self.replica.index}.json", {"generation": generation, "bundle_id": bundle_id, "error": error})

    # -- publishing --------------------------------------------------------------------------
    def publish(self, path: Path, bundle_id: str) -> None:
        """Tell the other replicas to load ``path`` (this one already has ``bundle_id``); wait until they have.

        Raises:
            ReplicaSyncError: a replica failed to load it, or did not within ``timeout_sec``.
        """
        with self._locked():
            generation = int(self._published().get("generation", 0)) + 1
            self._write("reload.json", {"generation": generation, "path": str(path), "bundle_id": bundle_id, "by": self.replica.index})
            self._seen = generation
        self._ack(generation, bundle_id)
        deadline = time.monotonic() + self.timeout_sec
        while True:
            acks = {i: self._read(f"ack-{i}.json") for i in range(self.replica.count)}
            errors = {i: a["error"] for i, a in acks.items() if a.get("generation", 0) >= generation and a.get("error")}
            if errors:
                raise ReplicaSyncError("; ".join(f"replica {i} could not load {path}: {e}" for i, e in sorted(errors.items())))
            behind = sorted(i for i, a in acks.items() if a.get("generation", 0) < generation)
            if not behind:
                return
            if time.monotonic() > deadline:
                raise ReplicaSyncError(f"replica(s) {behind} did not load {path} within {self.timeout_sec:.0f} s")
            time.sleep(self.poll_sec / 2)

    # -- following ---------------------------------------------------------------------------
    def follow(self, holder: Any, *, strict_checkpoint: bool = True, metrics: Any = None) -> ReplicaSync:
        """Start a thread that loads what other replicas publish into ``holder`` (an EngineHolder)."""

        def loop() -> None:
            while not self._stop.wait(self.poll_sec):
                pub = self._published()
                generation = int(pub.get("generation", 0))
                if generation <= self._seen:
                    continue
                self._seen = generation
                if pub.get("by") == self.replica.index:
                    continue
                error = ""
                try:
                    if holder.current.bundle_id != pub.get("bundle_id") or holder.current.bundle_path != Path(pub["path"]):
                        holder.reload(Path(pub["path"]), strict_checkpoint=strict_checkpoint)
                        if metrics is not None:
                            metrics.reloads.labels("ok").inc()
                except Exception as exc:  # reported to the publisher, which fails its ReloadIndex
                    log.exception("replica %d could not load %s", self.replica.index, pub.get("path"))
                    error = f"{type(exc).__name__}: {exc}"
                    if metrics is not None:
                        metrics.reloads.labels("failed").inc()
                self._ack(generation, holder.current.bundle_id, error)

        self._thread = threading.Thread(target=loop, name=f"replica-sync-{self.replica.index}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ------------------------------------------------------------------------- supervisor
def replica_settings(settings: Settings, index: int, port: int) -> Settings:
    """Settings of replica ``index``: the shared ``port``, jobs only on replica 0, metrics on ``metrics_port + index``."""
    metrics_port = settings.metrics_port
    if metrics_port:  # None = off, 0 = a free port each
        metrics_port += index
    return replace(settings, port=port, job_slots=settings.job_slots if index == 0 else 0, metrics_port=metrics_port)


def _replica_main(settings: Settings, replica: Replica, grace_sec: float, ready: Any, parent_pid: int, log_level: int) -> None:
    """Entry point of a replica process: serve until SIGTERM/SIGINT, or until the supervisor is gone."""
    from services.server import run_until_signal, serve

    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s [replica {replica.index}] %(name)s: %(message)s")
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
