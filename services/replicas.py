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

The supervisor (:func:`services.supervisor.run_replicas`) starts replica 0 first (it may bind port 0), then the
others on the port it got. SIGINT/SIGTERM are forwarded (graceful shutdown in each); a replica
that exits on its own stops the others and the supervisor exits 1, so an orchestrator restarts
the whole server. A replica whose supervisor disappears stops itself.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avlearn.atomic import atomic_write_json

log = logging.getLogger(__name__)


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
