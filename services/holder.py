"""Hot reload: the current :class:`Engine` behind a lock (``EngineHolder``), swapped for one on a new
bundle while queries keep flowing; a bundle is opened for serving only when the loaded checkpoint
built it (``open_bundle``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avlearn.index.bundle import Bundle
from services.engine import Engine
from services.errors import InvalidQuery, NotReady
from services.query_types import QueryEmbedder

log = logging.getLogger(__name__)


def open_bundle(path: Path, embedder: QueryEmbedder, *, strict_checkpoint: bool = True, mmap: bool = True) -> Bundle:
    """Open a bundle for serving, refusing one built by another checkpoint (``strict_checkpoint``).

    ``mmap`` (the default): FAISS indices memory-mapped read-only, so the replicas of a server
    share one copy of each index in the page cache (``Bundle.open``); False reads them into RAM.
    """
    bundle = Bundle.open(path, serving=True, mmap=mmap)
    want = str(getattr(embedder, "checkpoint_hash", ""))
    got = str(bundle.manifest.checkpoint_hash or "")
    if strict_checkpoint and want and got and want != got:
        bundle.close()
        raise NotReady(f"bundle {path} was built by checkpoint {got[:12]}…, but this server embeds with {want[:12]}…")
    return bundle


class EngineHolder:
    """The current Engine behind a lock: queries ``use()`` it, reloads ``swap()`` it.

    ``mmap``: how reloads open bundles (see ``open_bundle``).
    """

    def __init__(self, engine: Engine, *, mmap: bool = True) -> None:
        self._engine = engine
        self.mmap = mmap
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self.reloads = 0

    @property
    def current(self) -> Engine:
        return self._engine

    @contextmanager
    def use(self) -> Iterator[Engine]:
        """The current engine, kept open until the block ends (even if a reload happens meanwhile)."""
        with self._lock:
            engine = self._engine
            engine.acquire()
        try:
            yield engine
        finally:
            engine.release()

    def reload(self, path: Path | None, *, strict_checkpoint: bool = True) -> tuple[str, str]:
        """Open the bundle at ``path`` (None = the current path) and swap it in; returns (old id, new id).

        Opening happens outside the swap lock, so queries keep flowing meanwhile; the old bundle
        is closed when its last in-flight query finishes.
        """
        with self._reload_lock:
            old = self._engine
            if old.embedder is None:
                raise NotReady("no model is loaded (start the server with --checkpoint)")
            target = Path(path) if path else old.bundle_path
            if target is None:
                raise InvalidQuery("no bundle path given and none loaded before")
            bundle = open_bundle(target, old.embedder, strict_checkpoint=strict_checkpoint, mmap=self.mmap)
            new = Engine(old.embedder, bundle, target, old.limits, old.decoder)
            with self._lock:
                self._engine = new
                self.reloads += 1
            old.retire()
            log.info("reloaded bundle %s -> %s from %s", old.bundle_id or "-", new.bundle_id, target)
            return old.bundle_id, new.bundle_id

    def close(self) -> None:
        with self._lock:
            self._engine.retire()
