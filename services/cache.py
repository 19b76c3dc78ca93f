"""Query-result cache: Redis (shared by replicas) or an in-process LRU, both with a TTL.

Keys are ``sha256(rpc, bundle_id, deterministic request bytes)``; the request bytes contain
the input (media bytes, segment id or vector) and ``k``, and the bundle id changes on every
rebuild, so a reload never serves stale hits. Values are serialized response messages.

The cache is best-effort: a Redis error is logged (once per outage) and counted, the query
goes on uncached, and Redis is not retried for ``retry_after_sec`` (no per-query connect stalls).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger(__name__)


def cache_key(rpc: str, bundle_id: str, request_bytes: bytes) -> str:
    """A cache key for one query (hex sha256 under the ``avlearn:q:`` prefix)."""
    h = hashlib.sha256()
    for part in (rpc.encode(), b"\0", bundle_id.encode(), b"\0", request_bytes):
        h.update(part)
    return "avlearn:q:" + h.hexdigest()


class QueryCache(Protocol):
    blocking: bool  # whether get/set may block on the network (the async server then calls them off the event loop)

    @property
    def enabled(self) -> bool: ...

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def close(self) -> None: ...


class LRUCache:
    """Thread-safe in-process LRU with a TTL (monotonic clock)."""

    blocking = False

    def __init__(self, max_items: int = 4096, ttl_sec: float = 600.0) -> None:
        self.max_items = max_items
        self.ttl_sec = ttl_sec
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_items > 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if time.monotonic() >= expires:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def set(self, key: str, value: bytes) -> None:
        if self.max_items <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl_sec, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        with self._lock:
            self._items.clear()


class RedisCache:
    """Redis-backed cache (``SET key value PX ttl``); never raises on Redis errors.

    Attributes:
        errors: how many operations failed (Redis down, timeout, ...).
    """

    blocking = True

    def __init__(self, url: str, *, ttl_sec: float = 600.0, timeout_sec: float = 0.25, retry_after_sec: float = 1.0) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a core dependency
            raise ImportError("RedisCache needs the `redis` package (pip install redis)") from exc
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_sec, socket_connect_timeout=timeout_sec)
        self.ttl_ms = int(ttl_sec * 1000)
        self.retry_after_sec = retry_after_sec
        self.errors = 0
        self.enabled = True
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _failed(self, op: str, exc: Exception) -> None:
        with self._lock:
            self.errors += 1
            first = self._down_until == 0.0
            self._down_until = time.monotonic() + self.retry_after_sec
        if first:
            log.warning("redis cache %s failed (%s); continuing without cache", op, exc)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _recovered(self) -> None:
        if self._down_until:
            with self._lock:
                if self._down_until:
                    log.info("redis cache is back")
                self._down_until = 0.0

    def get(self, key: str) -> bytes | None:
        if not self._available():
            return None
        try:
            value = self._redis.get(key)
        except Exception as exc:  # any redis/socket error: the cache is best-effort
            self._failed("get", exc)
            return None
        self._recovered()
        return value if isinstance(value, bytes) or value is None else bytes(value)  # type: ignore[arg-type]

    def set(self, key: str, value: bytes) -> None:
        if not self._available():
            return
        try:
            self._redis.set(key, value, px=self.ttl_ms)
        except Exception as exc:
            self._failed("set", exc)
            return
        self._recovered()

    def close(self) -> None:
        self._redis.close()


def make_cache(redis_url: str | None, *, max_items: int = 4096, ttl_sec: float = 600.0) -> QueryCache:
    """Redis when a URL is given, else an in-process LRU."""
    if redis_url:
        return RedisCache(redis_url, ttl_sec=ttl_sec)
    return LRUCache(max_items, ttl_sec)
