"""Index bundle reader: ``Bundle.open(path)`` for search, stored vectors and segment metadata.

The format (files, ``manifest.json``, versioned publishing) is defined in
``avlearn.index.manifest``; bundles are written by ``avlearn.index.build``. ``Bundle.open``
resolves the published symlink once, so an open bundle keeps reading its own version while a
new one is published.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.index import faiss_search as fs
from avlearn.index.manifest import METADATA, MODALITIES, Manifest, ids_file, index_file, vectors_file
from avlearn.index.metadata import MetadataReader, SegmentMeta
from avlearn_proto.records import Hit


def hit_from_meta(meta: SegmentMeta, score: float = 0.0) -> Hit:
    """A search result for a segment's metadata (score 0.0: the metadata alone)."""
    return Hit(meta.segment_id, float(score), meta.clip_id, meta.source, meta.start_sec, meta.labels)


def group_by_clip(hits: Sequence[Hit], k: int, *, exclude: Collection[str] = ()) -> list[Hit]:
    """The first (best) hit of each clip, in order, up to k clips; clips in ``exclude`` are left out.

    ``hits`` must be best first (as :meth:`Bundle.search` returns them).
    """
    seen = set(exclude)
    out = []
    for h in hits:
        if h.clip_id in seen:
            continue
        seen.add(h.clip_id)
        out.append(h)
        if len(out) == k:
            break
    return out


class _ModalityIndex:
    def __init__(self, root: Path, modality: str, params: dict, *, mmap: bool = False, gpu: bool = False) -> None:
        path = index_file(root, modality)
        self.index = fs.read_index(str(path), mmap=mmap and not gpu)
        # plain ndarray views of the memory maps: np.memmap's Python-level indexing costs more
        # than a served query's whole gather
        self.ids = np.asarray(np.load(ids_file(root, modality), mmap_mode="r"))
        self.vectors = np.asarray(np.load(vectors_file(root, modality), mmap_mode="r"))
        self.params = fs.SearchParams.from_dict(params)
        fs.apply_params(self.index, self.params)  # once, before any concurrent search (a GPU copy keeps them)
        if gpu:
            self.index = fs.to_gpu(self.index, shard=not fs.fits_one_gpu(path.stat().st_size))
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
        mmap: memory-map the FAISS indices read-only (``faiss_search.read_index``) instead of
            reading them into this process: processes that open the same bundle version (serving
            replicas) share one copy in the OS page cache. The stored vectors and ids are always
            memory-mapped, and ``metadata.sqlite`` is read through SQLite's mmap, so with
            ``mmap=True`` nothing of size O(N) is copied per process.
        gpu: search on every GPU FAISS sees (``faiss_search.to_gpu``: replicated, or sharded when
            one device cannot hold an index); raises RuntimeError without one. GPU FAISS caps
            k * k_factor at 2048.
    """

    def __init__(
        self, root: Path, manifest: Manifest, indices: dict[str, _ModalityIndex], meta: MetadataReader, *, serving: bool = False, mmap: bool = False
    ) -> None:
        self.path = root
        self.manifest = manifest
        self._indices = indices
        self._meta = meta
        self.serving = serving
        self.mmap = mmap

    @classmethod
    def open(cls, path: str | Path, *, serving: bool = False, mmap: bool = False, gpu: bool = False) -> Bundle:
        """Open the bundle at ``path`` (the published symlink or a version dir).

        Raises:
            FileNotFoundError: no bundle there.
            ValueError: an unsupported format version.
        """
        root = Path(os.path.realpath(path))
        try:
            manifest = Manifest.read(root)
        except FileNotFoundError:
            raise FileNotFoundError(f"no index bundle at {path} (missing manifest.json)") from None
        params = manifest.search_params
        indices = {m: _ModalityIndex(root, m, params.get(m, {}), mmap=mmap, gpu=gpu) for m in MODALITIES if index_file(root, m).is_file()}
        return cls(root, manifest, indices, MetadataReader(root / METADATA), serving=serving, mmap=mmap)

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

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
            fs.set_serving_threads(1)  # OpenMP's thread count is per calling thread
        scores, pos = fs.search(mi.index, fs.normalize(q), k, mi.params, mi.vectors)
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
        return self._hits(scores, ids)

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[list[Hit]]:
        meta = self._meta.get_many(ids[ids >= 0].tolist())
        return [[hit_from_meta(meta[int(i)], s) for s, i in zip(srow, irow) if i >= 0 and int(i) in meta] for srow, irow in zip(scores, ids)]

    def search_clips(
        self, modality: str, vectors: np.ndarray, k: int, *, exclude_clips: Sequence[Collection[str]] | None = None, fetch_factor: int = 4
    ) -> list[list[Hit]]:
        """Top-k *clips* of ``modality`` for each query row, each as its best-scoring segment.

        Searches ``k * fetch_factor`` segments, keeps each clip's first (best) hit, and searches
        deeper (4x each round) for the queries that found fewer than k clips while the index still
        had segments to give.

        Args:
            exclude_clips: per query row, clip ids to leave out (e.g. the query's own clip).

        Returns:
            Q lists of up to k hits with distinct ``clip_id``, best first.
        """
        q = np.asarray(vectors, np.float32)
        if q.ndim == 1:
            q = q[None]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        excl = [set(e) for e in exclude_clips] if exclude_clips is not None else [set() for _ in range(len(q))]
        if len(excl) != len(q):
            raise ValueError(f"exclude_clips has {len(excl)} rows for {len(q)} queries")
        total = len(self._index(modality).ids)
        out: list[list[Hit]] = [[] for _ in range(len(q))]
        todo = list(range(len(q)))
        fetch = max(1, min(total, k * fetch_factor))
        while todo:
            scores, ids = self.search_positions(modality, q[todo], fetch)
            deeper = []
            for row, qi, hits in zip(ids, todo, self._hits(scores, ids)):
                out[qi] = group_by_clip(hits, k, exclude=excl[qi])
                if len(out[qi]) < k and int(np.sum(row >= 0)) == fetch < total:
                    deeper.append(qi)
            todo, fetch = deeper, min(total, fetch * 4)
        return out

    def vector(self, modality: str, segment_id: int) -> np.ndarray:
        """(D,) float32 stored embedding of a segment. Raises KeyError for an unknown id."""
        mi = self._index(modality)
        return np.asarray(mi.vectors[mi.position(segment_id)], np.float32)

    def segment(self, segment_id: int) -> Hit:
        """A segment's metadata as a Hit with score 0.0. Raises KeyError for an unknown id."""
        return hit_from_meta(self._meta.get(segment_id))

    def metadata(self) -> MetadataReader:
        return self._meta

    def close(self) -> None:
        self._meta.close()
        self._indices = {}

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
