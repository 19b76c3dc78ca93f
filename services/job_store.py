"""Batch-embed job records in a shared store (Redis or SQLite); the runner that leases them is services.jobs.

A job record lives in the store, so any replica answers GetJob/WatchJob and a job survives
the process that ran it. A runner *leases* a job (a key that expires after ``lease_sec``
unless its heartbeat renews it); when a runner dies, the lease lapses and any runner
(the same server restarted, or another replica) takes the job over and calls
``avlearn.pipeline.embed.run_embed`` again, which resumes from the shards already written.

States: queued → running → succeeded | failed | cancelled. A stopped runner (graceful
shutdown) leaves its job ``running`` with the lease released, so it resumes at once.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})


@dataclass
class JobRecord:
    """One embed job. ``progress`` is 0..1; ``summary`` is run_embed's summary (+ ``bundle`` path)."""

    job_id: str
    archive_path: str
    output_path: str
    checkpoint: str
    build_bundle: bool = True
    workers: int = 2
    segment_sec: float = 1.0
    hop_sec: float = 1.0
    state: str = QUEUED
    progress: float = 0.0
    files_done: int = 0
    files_total: int = 0
    segments: int = 0
    error: str = ""
    created_unix: float = field(default_factory=time.time)
    updated_unix: float = field(default_factory=time.time)
    summary: dict = field(default_factory=dict)
    cancel_requested: bool = False
    attempts: int = 0

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> JobRecord:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class JobStore(Protocol):
    """Where job records, leases and cancel flags live."""

    def create(self, job: JobRecord) -> tuple[JobRecord, bool]:
        """Insert unless the id exists; returns (the stored record, whether it was created)."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def save(self, job: JobRecord) -> None: ...

    def unfinished(self) -> list[str]:
        """Ids of queued or running jobs, oldest first."""

    def acquire_lease(self, job_id: str, owner: str, ttl_sec: float) -> bool: ...

    def renew_lease(self, job_id: str, owner: str, ttl_sec: float) -> bool: ...

    def release_lease(self, job_id: str, owner: str) -> None: ...

    def request_cancel(self, job_id: str) -> None: ...

    def close(self) -> None: ...


class SQLiteJobStore:
    """Job store in one SQLite file (WAL), safe across threads and processes on one host."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created REAL, state TEXT, record TEXT, "
            "lease_owner TEXT, lease_until REAL DEFAULT 0, cancel INTEGER DEFAULT 0)"
        )

    def _row_to_job(self, row) -> JobRecord:
        job = JobRecord.from_json(row[0])
        job.cancel_requested = job.cancel_requested or bool(row[1])
        return job

    def create(self, job: JobRecord) -> tuple[JobRecord, bool]:
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs (id, created, state, record) VALUES (?, ?, ?, ?)", (job.job_id, job.created_unix, job.state, job.to_json())
            )
            created = cur.rowcount == 1
        stored = job if created else self.get(job.job_id)
        assert stored is not None  # INSERT OR IGNORE kept the existing row
        return stored, created

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT record, cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._row_to_job(row)

    def save(self, job: JobRecord) -> None:
        job.updated_unix = time.time()
        with self._lock:
            self._db.execute("UPDATE jobs SET record = ?, state = ? WHERE id = ?", (job.to_json(), job.state, job.job_id))

    def unfinished(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE state IN (?, ?) ORDER BY created", (QUEUED, RUNNING)).fetchall()
        return [r[0] for r in rows]

    def acquire_lease(self, job_id: str, owner: str, ttl_sec: float) -> bool:
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ? AND (lease_until < ? OR lease_owner IS NULL OR lease_owner = ?)",
                (owner, now + ttl_sec, job_id, now, owner),
            )
            return cur.rowcount == 1

    def renew_lease(self, job_id: str, owner: str, ttl_sec: float) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ?", (time.time() + ttl_sec, job_id, owner))
            return cur.rowcount == 1

    def release_lease(self, job_id: str, owner: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ?", (job_id, owner))

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


_RENEW_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisJobStore:
    """Job store in Redis: ``job:<id>`` (JSON), ``jobs`` (sorted set by creation time), ``job:<id>:lease``, ``job:<id>:cancel``.

    Redis errors propagate (a job store that cannot be reached is an UNAVAILABLE answer, not a silent loss).
    """

    def __init__(self, url: str, *, prefix: str = "avlearn:", timeout_sec: float = 2.0) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_sec, socket_connect_timeout=timeout_sec)
        self.prefix = prefix
        self._renew = self._redis.register_script(_RENEW_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)

    def _key(self, job_id: str, suffix: str = "") -> str:
        return f"{self.prefix}job:{job_id}{suffix}"

    def create(self, job: JobRecord) -> tuple[JobRecord, bool]:
        created = bool(self._redis.set(self._key(job.job_id), job.to_json(), nx=True))
        if created:
            self._redis.zadd(self.prefix + "jobs", {job.job_id: job.created_unix})
            return job, True
        stored = self.get(job.job_id)
        assert stored is not None  # SET NX failed: the key exists
        return stored, False

    def get(self, job_id: str) -> JobRecord | None:
        raw, cancel = self._redis.mget([self._key(job_id), self._key(job_id, ":cancel")])
        if raw is None:
            return None
        job = JobRecord.from_json(raw)
        job.cancel_requested = job.cancel_requested or cancel is not None
        return job

    def save(self, job: JobRecord) -> None:
        job.updated_unix = time.time()
        self._redis.set(self._key(job.job_id), job.to_json())

    def unfinished(self) -> list[str]:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in self._redis.zrange(self.prefix + "jobs", 0, -1)]  # type: ignore[union-attr]
        out = []
        for job_id in ids:
            job = self.get(job_id)
            if job is not None and not job.done:
                out.append(job_id)
        return out

    def acquire_lease(self, job_id: str, owner: str, ttl_sec: float) -> bool:
        key = self._key(job_id, ":lease")
        if self._redis.set(key, owner, nx=True, px=int(ttl_sec * 1000)):
            return True
        return bool(self._renew(keys=[key], args=[owner, int(ttl_sec * 1000)]))

    def renew_lease(self, job_id: str, owner: str, ttl_sec: float) -> bool:
        return bool(self._renew(keys=[self._key(job_id, ":lease")], args=[owner, int(ttl_sec * 1000)]))

    def release_lease(self, job_id: str, owner: str) -> None:
        self._release(keys=[self._key(job_id, ":lease")], args=[owner])

    def request_cancel(self, job_id: str) -> None:
        self._redis.set(self._key(job_id, ":cancel"), b"1")

    def close(self) -> None:
        self._redis.close()


def make_job_store(redis_url: str | None, sqlite_path: str | os.PathLike) -> JobStore:
    """Redis when a URL is given, else SQLite at ``sqlite_path``."""
    return RedisJobStore(redis_url) if redis_url else SQLiteJobStore(sqlite_path)
