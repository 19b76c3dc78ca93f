"""FAISS search side: what a served bundle needs (read, search, exact re-rank), and exact k-NN.

Every index holds L2-normalised vectors and searches by inner product (cosine similarity);
index rows are *positions* 0..N-1 (the bundle maps them to segment ids). Building and
tuning an index is ``avlearn.index.faiss_index``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def load_faiss():
    """The ``faiss`` module, its loader's INFO lines (one ModuleNotFoundError per SIMD variant tried) silenced
    unless a level was set for the ``faiss.loader`` logger (``avlearn -v`` sets DEBUG)."""
    loader = logging.getLogger("faiss.loader")
    if loader.level == logging.NOTSET:
        loader.setLevel(logging.WARNING)
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise ImportError("FAISS is missing: pip install faiss-cpu (or the 'gpu' extra: faiss-gpu-cu12)") from exc
    return faiss


def normalize(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass
class SearchParams:
    """How a built index is searched: FAISS parameter string plus exact re-ranking factor."""

    faiss: str = ""  # e.g. "nprobe=16,quantizer_efSearch=64"; "" for Flat
    k_factor: int = 1  # search k * k_factor candidates, re-rank exactly with stored vectors
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"faiss": self.faiss, "k_factor": self.k_factor, **self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> SearchParams:
        d = dict(d)
        return cls(faiss=d.pop("faiss", ""), k_factor=int(d.pop("k_factor", 1)), extra=d)


def apply_params(index: Any, params: SearchParams) -> None:
    """Set the FAISS search parameters on an index (do this once, before concurrent searches)."""
    if params.faiss:
        load_faiss().ParameterSpace().set_index_parameters(index, params.faiss)


def search(index: Any, queries: np.ndarray, k: int, params: SearchParams, vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Search normalised queries (Q, D) -> (scores (Q, k) float32, positions (Q, k) int64; -1 = none).

    With ``params.k_factor > 1`` the index returns ``k * k_factor`` candidates that are
    re-scored exactly against ``vectors`` (N, D) (the bundle's stored vectors).
    """
    n = index.ntotal
    kk = min(n, k * params.k_factor) if params.k_factor > 1 and vectors is not None else min(n, k)
    if kk <= 0:
        return np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64)
    scores, pos = index.search(queries, kk)
    if vectors is not None and (kk > k or params.k_factor > 1):
        scores, pos = _rerank(queries, pos, vectors, k)
    if pos.shape[1] < k:
        pad = k - pos.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
    return scores.astype(np.float32), pos.astype(np.int64)


def _rerank(queries: np.ndarray, pos: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate positions (Q, kk) exactly against ``vectors``; keep the top k."""
    if len(pos) == 1:  # a served query: a plain gather of its few rows, a handful of numpy calls
        p = pos[0][pos[0] >= 0]
        exact = np.asarray(vectors[p], np.float32) @ queries[0]
        top = np.argsort(-exact, kind="stable")[:k]
        return exact[top][None].astype(np.float32), p[top][None]
    valid = pos >= 0
    safe = np.where(valid, pos, 0)
    flat = np.unique(safe)
    lookup = np.asarray(vectors[flat], np.float32)  # one sorted gather (memory-map friendly)
    cand = lookup[np.searchsorted(flat, safe)]  # (Q, kk, D)
    exact = np.einsum("qkd,qd->qk", cand, queries)
    exact[~valid] = -np.inf
    top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(exact, top, 1)
    out = np.take_along_axis(pos, top, 1)
    out[~np.isfinite(scores)] = -1
    return scores.astype(np.float32), out


def exact_knn(db: np.ndarray, queries: np.ndarray, k: int, *, chunk_rows: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of normalised queries over db (N, D), chunked for memory maps.

    Returns (scores (Q, k), positions (Q, k)).
    """
    faiss = load_faiss()
    q = np.ascontiguousarray(queries, np.float32)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_p = np.zeros((len(q), 0), np.int64)
    for lo in range(0, db.shape[0], chunk_rows):
        chunk = normalize(db[lo : lo + chunk_rows])
        s, p = faiss.knn(q, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        best_s = np.concatenate([best_s, s], axis=1)
        best_p = np.concatenate([best_p, p + lo], axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(best_s, order, 1)
        best_p = np.take_along_axis(best_p, order, 1)
    return best_s, best_p


def neighbor_recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Neighbour recall of an approximate index: mean |found[:k] ∩ truth[:k]| / k over queries, where
    ``truth`` is exact search's top k (positions; -1 never matches). Not retrieval recall (avlearn.eval.metrics)."""
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        hits += len(set(f[f >= 0].tolist()) & set(t.tolist()))
    return hits / (k * len(truth))


def set_serving_threads(threads: int = 1) -> None:
    """FAISS OpenMP threads for searches made from the *calling thread*: 1 for serving.

    OpenMP keeps this setting per thread: a thread that never calls it (a gRPC worker, say)
    searches with one OpenMP thread per core, and concurrent single queries then fight over
    the cores. Call it in the thread that searches (``Bundle`` does, before each search).
    """
    load_faiss().omp_set_num_threads(threads)


def mmap_flags() -> int:
    """``faiss.read_index`` flags that memory-map an index's bulk data read-only instead of copying it.

    FAISS >= 1.11 (``IO_FLAG_MMAP_IFC``): the codes of every flat-code storage (Flat, SQ, PQ), the
    HNSW graph and IVF inverted lists (codes and ids) are views of one ``PROT_READ`` file mapping.
    Older FAISS (``IO_FLAG_MMAP``): only IVF inverted lists are mapped (``OnDiskInvertedLists``);
    Flat and HNSW indices are read into RAM as without the flag.
    """
    faiss = load_faiss()
    if hasattr(faiss, "IO_FLAG_MMAP_IFC"):
        return faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
    return faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY


def read_index(path: str, *, mmap: bool = False) -> Any:
    """Read an index written by ``faiss.write_index``.

    mmap: map the index file read-only (``mmap_flags``) instead of reading it into this process's
        heap: the pages live in the OS page cache, shared by every process that maps the same file
        (serving replicas), and enter RAM only as searches touch them. The index must not be
        modified afterwards (``add`` on a read-only mapping fails or crashes).
    """
    faiss = load_faiss()
    return faiss.read_index(str(path), mmap_flags()) if mmap else faiss.read_index(str(path))


def fits_one_gpu(nbytes: int, *, headroom: float = 0.8) -> bool:
    """Whether an index of ``nbytes`` fits in ``headroom`` of the free memory of the smallest visible GPU."""
    import torch

    if not torch.cuda.is_available():
        return True
    free = min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    return nbytes <= headroom * free


def to_gpu(index: Any, *, shard: bool = False) -> Any:
    """A copy of a CPU index on every GPU FAISS sees: replicated (``IndexReplicas``, more queries per second)
    or, with ``shard``, split over them (``IndexShards``: each GPU holds 1/G of the vectors, for an
    index one device cannot hold). Set search parameters on the CPU index first (the copy keeps them).

    Raises:
        RuntimeError: FAISS sees no GPU (faiss-cpu), or cannot clone this index type to GPU.
    """
    faiss = load_faiss()
    if not hasattr(faiss, "GpuMultipleClonerOptions") or faiss.get_num_gpus() < 1:
        raise RuntimeError("FAISS sees no GPU (install the 'gpu' extra: faiss-gpu-cu12, on a CUDA machine)")
    co = faiss.GpuMultipleClonerOptions()
    co.shard = shard
    return faiss.index_cpu_to_all_gpus(index, co=co)
