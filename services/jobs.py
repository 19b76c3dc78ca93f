"""Batch-embed jobs: a runner that leases job records from the shared store (services.job_store).

A runner *leases* a job (a key that expires after ``lease_sec`` unless its heartbeat renews
it); when a runner dies, the lease lapses and any runner (the same server restarted, or
another replica) takes the job over and calls ``avlearn.pipeline.embed.run_embed`` again,
which resumes from the shards already written. A stopped runner (graceful shutdown) leaves
its job ``running`` with the lease released, so it resumes at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.job_store import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobRecord, JobStore

log = logging.getLogger(__name__)


# -- running ---------------------------------------------------------------------------------


def _progress_fields(info: dict) -> dict:
    """Map run_embed's progress dict onto the record's counters (tolerant of missing keys)."""
    out: dict = {}
    done = info.get("files_done", info.get("done"))
    total = info.get("files_total", info.get("total"))
    if done is not None:
        out["files_done"] = int(done)
    if total is not None:
        out["files_total"] = int(total)
    if info.get("segments") is not None:
        out["segments"] = int(info["segments"])
    if total:
        out["progress"] = min(1.0, float(done or 0) / float(total))
    elif info.get("progress") is not None:
        out["progress"] = float(info["progress"])
    return out


def run_embed_job(job: JobRecord, progress: Callable[[dict], None], should_stop: Callable[[], bool]) -> dict:
    """The work of one job: run_embed into ``<output>/embeddings`` (resumable), then build the bundle."""
    from avlearn.pipeline.embed import run_embed

    out = Path(job.output_path)
    summary = run_embed(
        job.checkpoint,
        job.archive_path,
        out / "embeddings",
        workers=job.workers,
        segment_sec=job.segment_sec,
        hop_sec=job.hop_sec,
        progress=progress,
        should_stop=should_stop,
        show_progress=False,
    )
    summary = dict(summary or {})
    if should_stop():
        return summary
    if job.build_bundle:
        from avlearn.index.build import build_bundle

        summary["bundle"] = str(build_bundle(out / "embeddings", out / "bundle"))
    return summary


class JobRunner:
    """Leases unfinished jobs from a store and runs up to ``slots`` of them at once (one thread each).

    Args:
        store: the shared job store.
        slots: jobs run at once by this runner.
        lease_sec: lease length; the heartbeat renews it every lease_sec / 3.
        scan_interval_sec: how often the store is scanned for jobs to take over.
        work: the job body (tests may pass a different real function); default :func:`run_embed_job`.
        on_state: called with the new state on every transition (metrics).
    """

    def __init__(
        self,
        store: JobStore,
        *,
        slots: int = 1,
        lease_sec: float = 30.0,
        scan_interval_sec: float = 1.0,
        work: Callable[[JobRecord, Callable[[dict], None], Callable[[], bool]], dict] = run_embed_job,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.slots = slots
        self.lease_sec = lease_sec
        self.scan_interval_sec = scan_interval_sec
        self.work = work
        self.on_state = on_state or (lambda state: None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._active: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._scanner: threading.Thread | None = None

    def start(self) -> JobRunner:
        if self.slots > 0:
            self._scanner = threading.Thread(target=self._scan_loop, name="job-scanner", daemon=True)
            self._scanner.start()
        return self

    def wake(self) -> None:
        """Scan now (after a submit)."""
        self._wake.set()

    def stop(self, timeout_sec: float = 30.0) -> None:
        """Stop taking jobs and ask running ones to stop; they stay resumable."""
        self._stop.set()
        self._wake.set()
        if self._scanner is not None:
            self._scanner.join(timeout_sec)
        with self._lock:
            threads = list(self._active.values())
        for t in threads:
            t.join(timeout_sec)

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._scan_once()
            except Exception as exc:  # the store may be briefly unreachable; keep scanning
                log.warning("job scan failed: %s", exc)
            self._wake.wait(self.scan_interval_sec)
            self._wake.clear()

    def _scan_once(self) -> None:
        for job_id in self.store.unfinished():
            with self._lock:
                if len(self._active) >= self.slots or self._stop.is_set():
                    return
                if job_id in self._active:
                    continue
            if not self.store.acquire_lease(job_id, self.owner, self.lease_sec):
                continue
            t = threading.Thread(target=self._run, args=(job_id,), name=f"job-{job_id[:8]}", daemon=True)
            with self._lock:
                self._active[job_id] = t
            t.start()

    def _set_state(self, job: JobRecord, state: str) -> None:
        job.state = state
        self.store.save(job)
        self.on_state(state)

    def _run(self, job_id: str) -> None:
        lost = threading.Event()
        beat_stop = threading.Event()

        def heartbeat() -> None:
            while not beat_stop.wait(self.lease_sec / 3):
                try:
                    if not self.store.renew_lease(job_id, self.owner, self.lease_sec):
                        log.warning("job %s: lease lost; stopping here", job_id)
                        lost.set()
                        return
                except Exception as exc:
                    log.warning("job %s: lease renewal failed: %s", job_id, exc)

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            self._run_leased(job_id, lost)
        except Exception:
            log.exception("job %s: runner error", job_id)
        finally:
            beat_stop.set()
            beat.join()
            try:
                self.store.release_lease(job_id, self.owner)
            except Exception as exc:
                log.warning("job %s: lease release failed: %s", job_id, exc)
            with self._lock:
                self._active.pop(job_id, None)
            self._wake.set()

    def _run_leased(self, job_id: str, lost: threading.Event) -> None:
        job = self.store.get(job_id)
        if job is None or job.done:
            return
        if job.cancel_requested:
            self._set_state(job, CANCELLED)
            return
        job.attempts += 1
        self._set_state(job, RUNNING)
        log.info("job %s: %s %s (attempt %d)", job_id, "resuming" if job.attempts > 1 else "starting", job.archive_path, job.attempts)
        last_check: list[Any] = [0.0, False]  # [monotonic time of the last look, cancelled then]

        def cancelled() -> bool:
            now = time.monotonic()
            if now - last_check[0] > 0.25:
                last_check[0] = now
                try:
                    rec = self.store.get(job_id)
                    last_check[1] = bool(rec and rec.cancel_requested)
                except Exception:
                    pass
            return bool(last_check[1])

        def should_stop() -> bool:
            return self._stop.is_set() or lost.is_set() or cancelled()

        def progress(info: dict) -> None:
            for k, v in _progress_fields(info).items():
                setattr(job, k, v)
            try:
                self.store.save(job)
            except Exception as exc:  # progress is informative; the work goes on
                log.warning("job %s: progress not saved: %s", job_id, exc)

        try:
            summary = self.work(job, progress, should_stop)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            job.error = f"{type(exc).__name__}: {exc}"
            self._set_state(job, FAILED)
            return
        if cancelled():
            self._set_state(job, CANCELLED)
        elif self._stop.is_set() or lost.is_set():
            self.store.save(job)  # stays running: resumed by the next runner that leases it
        else:
            job.summary = summary
            job.progress = 1.0
            self._set_state(job, SUCCEEDED)


# -- paths -----------------------------------------------------------------------------------


class PathNotAllowed(PermissionError):
    """A path resolves outside every configured root (PERMISSION_DENIED)."""


def resolve_under_roots(path: str, roots: tuple[Path, ...] | list[Path], *, what: str = "archive") -> Path:
    """Resolve ``path`` (symlinks and ``..`` included) and require it to lie under one of ``roots``.

    A relative path is taken relative to the first root.

    Raises:
        ValueError: an empty path or one with a NUL byte.
        PathNotAllowed: no roots configured, or the resolved path is outside all of them.
        FileNotFoundError: the path is allowed but does not exist.
    """
    if not path or "\x00" in path:
        raise ValueError(f"{what} path must be a non-empty string without NUL bytes")
    if not roots:
        raise PathNotAllowed(f"this server has no job roots configured; no {what} path is allowed")
    resolved_roots = [Path(r).resolve() for r in roots]
    p = Path(path)
    if not p.is_absolute():
        p = resolved_roots[0] / p
    resolved = p.resolve()  # follows every symlink, collapses ..
    if not any(resolved == r or resolved.is_relative_to(r) for r in resolved_roots):
        raise PathNotAllowed(f"{what} path {path!r} resolves outside the allowed roots")
    if not resolved.exists():
        raise FileNotFoundError(f"{what} path {path!r} does not exist")
    return resolved
