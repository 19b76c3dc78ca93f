"""Index bundle: one FAISS index per modality + stored vectors + metadata, published atomically.

Layout (``OUT`` is a symlink to the current version)::

    OUT -> OUT.versions/<bundle_id>
    OUT.versions/<bundle_id>/
        manifest.json           format_version, bundle_id, checkpoint_hash, counts, dims,
                                factories, search params, recall@10, created
        metadata.sqlite         segment id -> clip_id, source, start_sec, labels
        image.faiss  audio.faiss               inner-product indices over L2-normalised rows
        image.ids.npy  audio.ids.npy           (N,) int64 segment ids, ascending; row i = index position i
        image.vectors.npy  audio.vectors.npy   (N, D) float16 normalised vectors (memory-mapped when read)

A build writes ``OUT.versions/.tmp-<bundle_id>-<pid>/``, renames it to
``OUT.versions/<bundle_id>`` and swaps the ``OUT`` symlink with ``os.replace`` (atomic):
a reader sees the old bundle or the new one, never a half-written one, and a crash
mid-build leaves the previous bundle untouched. ``Bundle.open`` resolves the link
once, so an open bundle keeps reading its own version while a new one is published.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.index import faiss_index as fi
from avlearn.index.metadata import MetadataReader, SegmentMeta

FORMAT_VERSION = 1
MODALITIES = ("image", "audio")
MANIFEST = "manifest.json"
METADATA = "metadata.sqlite"
KEEP_VERSIONS = 2  # the current bundle and the one before it (readers may still hold it)


@dataclass(frozen=True)
class Hit:
    """One search result (or one segment's metadata, with score 0.0)."""

    segment_id: int
    score: float
    clip_id: str
    source: str
    start_sec: float
    labels: tuple[str, ...] = ()

    @classmethod
    def from_meta(cls, meta: SegmentMeta, score: float = 0.0) -> "Hit":
        return cls(meta.segment_id, float(score), meta.clip_id, meta.source, meta.start_sec, meta.labels)


def index_file(root: Path, modality: str) -> Path:
    return root / f"{modality}.faiss"


def ids_file(root: Path, modality: str) -> Path:
    return root / f"{modality}.ids.npy"


def vectors_file(root: Path, modality: str) -> Path:
    return root / f"{modality}.vectors.npy"


def new_bundle_id() -> str:
    """Unique per build and sortable by time: ``YYYYmmddTHHMMSS-<8 hex>``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def versions_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.versions"


def staging_dir(out: str | Path, bundle_id: str) -> Path:
    """A fresh temp dir beside the target (same filesystem, so the publish is a rename)."""
    d = versions_dir(out) / f".tmp-{bundle_id}-{os.getpid()}"
    d.mkdir(parents=True)
    return d


def publish(staging: str | Path, out: str | Path, bundle_id: str, *, keep: int = KEEP_VERSIONS) -> Path:
    """Move a complete staging dir into place and point ``out`` at it atomically.

    An existing plain directory at ``out`` (not a symlink) is first renamed aside into
    the versions dir. Old versions beyond ``keep`` and stale temp dirs are removed.
    Returns the published version dir.
    """
    out = Path(out)
    vdir = versions_dir(out)
    final = vdir / bundle_id
    _fsync_tree(Path(staging))
    os.replace(staging, final)
    if out.exists() and not out.is_symlink():
        aside = vdir / f"legacy-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        os.replace(out, aside)
    link_tmp = out.parent / f".{out.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.join(vdir.name, bundle_id), link_tmp)
    os.replace(link_tmp, out)
    _fsync_dir(out.parent)
    collect_garbage(out, keep=keep)
    return final


def collect_garbage(out: str | Path, *, keep: int = KEEP_VERSIONS) -> None:
    """Remove versions older than the newest ``keep`` (never the current one) and dead temp dirs."""
    out = Path(out)
    vdir = versions_dir(out)
    if not vdir.is_dir():
        return
    current = out.resolve() if out.is_symlink() else None
    versions = sorted((p for p in vdir.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for p in versions[:-keep] if keep > 0 else versions:
        if current is None or p.resolve() != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in vdir.glob(".tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_tree(root: Path) -> None:
    for p in root.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _ModalityIndex:
    def __init__(self, root: Path, modality: str, params: dict) -> None:
        self.index = fi.read_index(str(index_file(root, modality)))
        # plain ndarray views of the memory maps: np.memmap's Python-level indexing costs more
        # than a served query's whole gather
        self.ids = np.asarray(np.load(ids_file(root, modality), mmap_mode="r"))
        self.vectors = np.asarray(np.load(vectors_file(root, modality), mmap_mode="r"))
        self.params = fi.SearchParams.from_dict(params)
        fi.apply_params(self.index, self.params)  # once, before any concurrent search
        self.dim = int(self.vectors.shape[1])

    def position(self, segment_id: int) -> int:
        i = int(np.searchsorted(self.ids, segment_id))
        if i >= len(self.ids) or int(self.ids[i]) != int(segment_id):
            raise KeyError(f"unknown segment id {segment_id}")
        return i


class Bundle:
    """A published index bundle, opened for search.

    Thread-safe for concurrent readers: search parameters are fixed at open, FAISS CPU
    search is read-only, and metadata lookups use one SQLite connection per thread.

    Args (``open``):
        serving: every search runs on one OpenMP thread, set in the thread that searches
            (many concurrent single queries, one per RPC thread); leave False for batched
            bulk search over all cores.
    """

    def __init__(self, root: Path, manifest: dict, indices: dict[str, _ModalityIndex], meta: MetadataReader, *, serving: bool = False) -> None:
        self.path = root
        self.manifest = manifest
        self._indices = indices
        self._meta = meta
        self.serving = serving

    @classmethod
    def open(cls, path: str | Path, *, serving: bool = False) -> "Bundle":
        """Open the bundle at ``path`` (the published symlink or a version dir).

        Raises:
            FileNotFoundError: no bundle there.
            ValueError: an unsupported format version.
        """
        root = Path(os.path.realpath(path))
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(f"no index bundle at {path} (missing {MANIFEST})")
        manifest = json.loads(mpath.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"bundle format_version {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})")
        params = manifest.get("search_params", {})
        indices = {m: _ModalityIndex(root, m, params.get(m, {})) for m in MODALITIES if index_file(root, m).is_file()}
        return cls(root, manifest, indices, MetadataReader(root / METADATA), serving=serving)

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self._indices)

    def dim(self, modality: str) -> int:
        return self._index(modality).dim

    def _index(self, modality: str) -> _ModalityIndex:
        try:
            return self._indices[modality]
        except KeyError:
            raise ValueError(f"modality must be one of {sorted(self._indices)}, not {modality!r}") from None

    def search_positions(self, modality: str, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Bulk search without metadata: (Q, D) -> (scores (Q, k), segment ids (Q, k); -1 = none)."""
        mi = self._index(modality)
        q = np.asarray(vectors, np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != mi.dim:
            raise ValueError(f"{modality} queries must be (Q, {mi.dim}), got {tuple(np.shape(vectors))}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.serving:
            fi.set_serving_threads(1)  # OpenMP's thread count is per calling thread
        scores, pos = fi.search(mi.index, fi.normalize(q), k, mi.params, mi.vectors)
        ids = np.where(pos >= 0, mi.ids[np.maximum(pos, 0)], -1)
        return scores, ids

    def search(self, modality: str, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k segments of ``modality`` for each query row.

        Args:
            modality: "audio" or "image" — which index to search.
            vectors: (Q, D) or (D,) float32 query embeddings (normalised here).

        Returns:
            Q lists of up to k hits, best first; ``score`` is the cosine similarity.
        """
        scores, ids = self.search_positions(modality, vectors, k)
        meta = self._meta.get_many(ids[ids >= 0].tolist())
        return [[Hit.from_meta(meta[int(i)], s) for s, i in zip(srow, irow) if i >= 0 and int(i) in meta] for srow, irow in zip(scores, ids)]

    def vector(self, modality: str, segment_id: int) -> np.ndarray:
        """(D,) float32 stored embedding of a segment. Raises KeyError for an unknown id."""
        mi = self._index(modality)
        return np.asarray(mi.vectors[mi.position(segment_id)], np.float32)

    def segment(self, segment_id: int) -> Hit:
        """A segment's metadata as a Hit with score 0.0. Raises KeyError for an unknown id."""
        return Hit.from_meta(self._meta.get(segment_id))

    def metadata(self) -> MetadataReader:
        return self._meta

    def close(self) -> None:
        self._meta.close()
        self._indices = {}

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
