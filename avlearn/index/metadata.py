"""Segment metadata store: SQLite (``metadata.sqlite`` in a bundle), optional Redis mirror.

Table ``segments(id INTEGER PRIMARY KEY, clip_id, source, start_sec, labels, has_audio)``;
``labels`` is ``;``-joined. Readers open the file read-only with one connection per
thread, so concurrent searches never share a cursor.

Redis layout (``register_in_redis``; idempotent, a re-run rewrites the same keys):
- ``{prefix}:bundles`` — set of registered bundle ids
- ``{prefix}:bundle:{bundle_id}:manifest`` — the manifest JSON
- ``{prefix}:bundle:{bundle_id}:segments`` — hash segment id -> JSON {clip_id, source, start_sec, labels, has_audio}
- ``{prefix}:bundle:current`` — the bundle id most recently registered
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    clip_id TEXT NOT NULL,
    source TEXT NOT NULL,
    start_sec REAL NOT NULL,
    labels TEXT NOT NULL,
    has_audio INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class SegmentMeta:
    """What the archive knows about one segment."""

    segment_id: int
    clip_id: str
    source: str
    start_sec: float
    labels: tuple[str, ...] = ()
    has_audio: bool = True

    def to_dict(self) -> dict:
        return {
            "segment_id": self.segment_id,
            "clip_id": self.clip_id,
            "source": self.source,
            "start_sec": self.start_sec,
            "labels": list(self.labels),
            "has_audio": self.has_audio,
        }


def split_labels(text: str) -> tuple[str, ...]:
    return tuple(filter(None, text.split(";")))


def write_metadata(path: str | Path, rows: Iterable[SegmentMeta], *, batch: int = 50_000) -> int:
    """Create ``path`` (must not exist) and insert the rows; returns the row count.

    Raises:
        sqlite3.IntegrityError: a segment id occurs twice.
    """
    con = sqlite3.connect(str(path))
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute(SCHEMA)
        count = 0
        buf: list[tuple] = []
        for r in rows:
            buf.append((int(r.segment_id), r.clip_id, r.source, float(r.start_sec), ";".join(r.labels), int(r.has_audio)))
            if len(buf) >= batch:
                con.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?)", buf)
                count += len(buf)
                buf.clear()
        if buf:
            con.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?)", buf)
            count += len(buf)
        con.commit()
        return count
    finally:
        con.close()


class MetadataReader:
    """Read-only, thread-safe lookups of segment metadata by id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no metadata store at {self.path}")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            con.execute("PRAGMA mmap_size=2147418112")  # read pages from the OS cache without a copy per read (SQLite's cap)
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    def get_many(self, ids: Iterable[int]) -> dict[int, SegmentMeta]:
        """Metadata of the known ids among ``ids`` (unknown ids are absent from the result)."""
        wanted = sorted(set(map(int, ids)))
        out: dict[int, SegmentMeta] = {}
        con = self._con()
        for lo in range(0, len(wanted), 900):
            part = wanted[lo : lo + 900]
            q = f"SELECT id, clip_id, source, start_sec, labels, has_audio FROM segments WHERE id IN ({','.join('?' * len(part))})"
            for row in con.execute(q, part):
                out[row[0]] = SegmentMeta(row[0], row[1], row[2], row[3], split_labels(row[4]), bool(row[5]))
        return out

    def get(self, segment_id: int) -> SegmentMeta:
        """Raises KeyError for an unknown id."""
        got = self.get_many([segment_id]).get(int(segment_id))
        if got is None:
            raise KeyError(f"unknown segment id {segment_id}")
        return got

    def count(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM segments").fetchone()[0])

    def iter_all(self, *, batch: int = 10_000) -> Iterator[SegmentMeta]:
        cur = self._con().execute("SELECT id, clip_id, source, start_sec, labels, has_audio FROM segments ORDER BY id")
        while rows := cur.fetchmany(batch):
            for row in rows:
                yield SegmentMeta(row[0], row[1], row[2], row[3], split_labels(row[4]), bool(row[5]))

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()


def register_in_redis(redis_url: str, manifest: dict, segments: Iterable[SegmentMeta], *, prefix: str = "avlearn", batch: int = 10_000) -> int:
    """Mirror a bundle's manifest and segment metadata into Redis; returns the segment count.

    Idempotent: the same bundle registered twice leaves the same keys and values.
    """
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - redis is a core dependency
        raise ImportError("the Redis client is missing: pip install redis") from exc
    client = redis.Redis.from_url(redis_url)
    bid = manifest["bundle_id"]
    base = f"{prefix}:bundle:{bid}"
    try:
        count = 0
        pipe = client.pipeline(transaction=False)
        pending = 0
        for s in segments:
            d = s.to_dict()
            sid = d.pop("segment_id")
            pipe.hset(f"{base}:segments", str(sid), json.dumps(d, sort_keys=True))
            count += 1
            pending += 1
            if pending >= batch:
                pipe.execute()
                pending = 0
        pipe.set(f"{base}:manifest", json.dumps(manifest, sort_keys=True))
        pipe.sadd(f"{prefix}:bundles", bid)
        pipe.set(f"{prefix}:bundle:current", bid)
        pipe.execute()
        return count
    finally:
        client.close()


def read_from_redis(redis_url: str, bundle_id: str, segment_id: int, *, prefix: str = "avlearn") -> SegmentMeta:
    """One segment's metadata from a Redis registration (KeyError when absent)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hget(f"{prefix}:bundle:{bundle_id}:segments", str(int(segment_id)))
    finally:
        client.close()
    if raw is None:
        raise KeyError(f"segment {segment_id} is not registered for bundle {bundle_id}")
    d = json.loads(raw)
    return SegmentMeta(int(segment_id), d["clip_id"], d["source"], float(d["start_sec"]), tuple(d["labels"]), bool(d["has_audio"]))
