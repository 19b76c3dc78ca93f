"""FAISS build side: factory choice from size and memory budget, CPU/GPU build, recall tuning (search: faiss_search).

Every index here holds L2-normalised vectors and searches by inner product
(cosine similarity). Index rows are *positions* 0..N-1; the bundle maps them to
segment ids with a sorted id array, so no IDMap is needed and the same code
runs on GPU.

Factory rule (``choose_factory``):
- N < ``FLAT_MAX_VECTORS`` (200k) and it fits the budget: ``Flat`` (exact).
- otherwise ``IVF{nlist}_HNSW32,SQ8`` (d + 8 bytes per vector) if it fits;
- otherwise ``OPQ{m}_{d},IVF{nlist}_HNSW32,PQ{m}`` (m + 8 bytes per vector) with the
  largest m that fits.
IVF searches may re-rank ``k * k_factor`` candidates exactly against the bundle's
memory-mapped float16 vectors (kept on disk, not in RAM); tuning picks k_factor.

``tune_search`` picks the cheapest search parameters (nprobe, quantizer efSearch,
k_factor) that reach recall@k >= target against exact search on held-out queries.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from avlearn.index import faiss_search as fs
from avlearn.index.faiss_search import SearchParams, apply_params, exact_knn, load_faiss, neighbor_recall, normalize, search

log = logging.getLogger(__name__)

FLAT_MAX_VECTORS = 200_000
IVF_ID_BYTES = 8  # IVF inverted lists store one int64 id per vector
HNSW_M = 32
TARGET_RECALL = 0.95
NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
K_FACTOR_GRID = (1, 2, 4, 8, 16)


class MemoryBudgetError(ValueError):
    """No index factory fits the requested memory budget."""


def nlist_for(n: int) -> int:
    """Number of IVF lists: the power of two nearest to 4 * sqrt(N), at least 64."""
    return int(max(64, 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))))


def estimate_memory_bytes(factory: str, n: int, d: int) -> int:
    """RAM an index of this factory needs for N d-dim vectors (codes + ids + quantiser)."""
    parts = factory.split(",")
    code = parts[-1]
    nlist = 0
    for p in parts:
        if p.startswith("IVF"):
            nlist = int(p[3:].split("_")[0])
    quantiser = nlist * d * 4 + nlist * HNSW_M * 2 * 4 if nlist else 0
    opq = d * d * 4 if parts[0].startswith("OPQ") else 0
    if code == "Flat" and not nlist:
        return n * d * 4
    if code == "SQ8":
        per = d
    elif code.startswith("PQ"):
        per = int(code[2:].split("x")[0])
    elif code == "Flat":
        per = d * 4
    else:
        raise ValueError(f"cannot estimate memory for factory {factory!r}")
    return n * (per + IVF_ID_BYTES) + quantiser + opq


def choose_factory(n: int, d: int, *, memory_budget_gb: float | None = None) -> str:
    """The FAISS factory string for N vectors of dim d under an optional RAM budget (GiB).

    Raises:
        MemoryBudgetError: even the smallest PQ code does not fit the budget.
    """
    budget = None if memory_budget_gb is None else memory_budget_gb * 2**30
    fits = lambda f: budget is None or estimate_memory_bytes(f, n, d) <= budget  # noqa: E731
    if n < FLAT_MAX_VECTORS and fits("Flat"):
        return "Flat"
    nlist = nlist_for(n)
    sq = f"IVF{nlist}_HNSW{HNSW_M},SQ8"
    if fits(sq):
        return sq
    for m in (64, 48, 32, 24, 16, 12, 8, 4):
        if m >= d or d % m:
            continue
        pq = f"OPQ{m}_{d},IVF{nlist}_HNSW{HNSW_M},PQ{m}"
        if fits(pq):
            return pq
    need = estimate_memory_bytes(f"OPQ4_{d},IVF{nlist}_HNSW{HNSW_M},PQ4", n, d) / 2**30
    raise MemoryBudgetError(f"{n} x {d} vectors need at least {need:.2f} GiB even with PQ; the budget is {memory_budget_gb} GiB")


def gpu_available() -> bool:
    """Whether FAISS sees a GPU (faiss-gpu installed and a device present)."""
    faiss = load_faiss()
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def resolve_gpu(gpu: str) -> bool:
    """'auto' -> use a GPU when FAISS sees one; 'on' -> require one; 'off' -> CPU."""
    if gpu not in ("auto", "on", "off"):
        raise ValueError(f"gpu must be auto, on or off, not {gpu!r}")
    if gpu == "off":
        return False
    have = gpu_available()
    if gpu == "on" and not have:
        raise RuntimeError("--gpu on, but FAISS sees no GPU (install the 'gpu' extra: faiss-gpu-cu12, on a CUDA machine)")
    return have


def _train_sample(vectors: np.ndarray, n_train: int, seed: int) -> np.ndarray:
    n = vectors.shape[0]
    if n <= n_train:
        return normalize(vectors[:])
    rows = np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))
    return normalize(vectors[rows])


def train_index(vectors: np.ndarray, factory: str, *, use_gpu: bool = False, seed: int = 0, max_train_per_list: int = 64) -> Any:
    """An empty inner-product index of ``factory``, trained on a sample of ``vectors`` (N, D).

    use_gpu: coarse k-means on GPU (the OPQ rotation and SQ/PQ codebooks train on CPU).
    max_train_per_list: training sample = this many vectors per IVF list (capped at N).
    """
    faiss = load_faiss()
    n, d = vectors.shape
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    if not index.is_trained:
        _cheaper_training(index)
        ivf = faiss.extract_index_ivf(index)
        n_train = min(n, max(ivf.nlist * max_train_per_list, 10_000))
        sample = _train_sample(vectors, n_train, seed)
        if use_gpu:
            _train_ivf_gpu(index, ivf, sample, seed)
        else:
            ivf.cp.seed = seed
            ivf.cp.niter = 10
            index.train(sample)
        log.info("trained %s on %d vectors in %.1f s", factory, len(sample), time.perf_counter() - t0)
    return index


def build_index(
    vectors: np.ndarray,
    factory: str,
    *,
    use_gpu: bool = False,
    seed: int = 0,
    chunk_rows: int = 262_144,
    max_train_per_list: int = 64,
) -> Any:
    """Train and fill an inner-product index.

    Args:
        vectors: (N, D) float16/float32, may be a memory map; rows are normalised here
            chunk by chunk, so the whole set is never copied to float32 at once.
        factory: a FAISS factory string (see ``choose_factory``).
        use_gpu: train the coarse quantiser (k-means) and add on GPU where FAISS can: the
            trained index is cloned to every GPU (``to_gpu``; sharded when one device cannot
            hold it), filled there and copied back; a factory FAISS cannot clone to GPU is
            filled on CPU.
        max_train_per_list: training sample = this many vectors per IVF list (capped at N).

    Returns:
        a CPU ``faiss.Index`` (GPU-built parts are copied back for saving).
    """
    faiss = load_faiss()
    n, d = vectors.shape
    t0 = time.perf_counter()
    index = train_index(vectors, factory, use_gpu=use_gpu, seed=seed, max_train_per_list=max_train_per_list)
    target = index
    if use_gpu:
        try:
            target = fs.to_gpu(index, shard=not fs.fits_one_gpu(_estimate_or_zero(factory, n, d)))
        except RuntimeError as exc:  # e.g. a part with no GPU implementation
            log.warning("%s: adding on CPU (FAISS could not clone it to GPU: %s)", factory, str(exc).splitlines()[0])
    for lo in range(0, n, chunk_rows):
        target.add(normalize(vectors[lo : lo + chunk_rows]))
    if target is not index:
        index = faiss.index_gpu_to_cpu(target)
    log.info("built %s over %d vectors in %.1f s", factory, n, time.perf_counter() - t0)
    return index


def build_sharded(vectors: np.ndarray, factory: str, shards: int, *, seed: int = 0, chunk_rows: int = 262_144, max_train_per_list: int = 64) -> Any:
    """``build_index`` split over ``shards`` indices of contiguous rows: a CPU ``faiss.IndexShards``.

    One index is trained; each shard is a copy of it filled with its rows, and the shards number
    their results by global position (``successive_ids``), so a search returns what one index
    over all rows returns. This is what ``to_gpu(index, shard=True)`` does across GPUs; on CPU it
    lets shards be filled (and held) separately.
    """
    faiss = load_faiss()
    n, d = vectors.shape
    if not 1 <= shards <= max(n, 1):
        raise ValueError(f"shards must be in 1..{n}, got {shards}")
    trained = train_index(vectors, factory, seed=seed, max_train_per_list=max_train_per_list)
    sharded = faiss.IndexShards(d, True, True)  # threaded, successive_ids
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = faiss.clone_index(trained)
        for lo in range(a, b, chunk_rows):
            part.add(normalize(vectors[lo : min(b, lo + chunk_rows)]))
        sharded.add_shard(part)  # the Python wrapper keeps a reference to each shard
    return sharded


def _estimate_or_zero(factory: str, n: int, d: int) -> int:
    try:
        return estimate_memory_bytes(factory, n, d)
    except ValueError:
        return 0


def _cheaper_training(index: Any) -> None:
    """Fewer OPQ / PQ k-means iterations than FAISS's defaults (50 / 25) and no polysemous
    training: same recall after tuning (exact re-ranking follows), many times faster to train."""
    faiss = load_faiss()
    pre = faiss.try_extract_index_ivf(index)
    pre = faiss.downcast_index(pre) if pre is not None else None
    top = faiss.downcast_index(index)
    if isinstance(top, faiss.IndexPreTransform):
        for i in range(top.chain.size()):
            vt = faiss.downcast_VectorTransform(top.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                vt.niter = 8
                vt.niter_pq_0 = 8
                vt.max_train_points = min(vt.max_train_points, 16_384)
    if pre is not None and hasattr(pre, "pq"):
        if hasattr(pre, "do_polysemous_training"):
            pre.do_polysemous_training = False  # simulated annealing for Hamming filtering we do not use: minutes
        pre.pq.cp.niter = 10
        pre.pq.cp.max_points_per_centroid = 64


def _train_ivf_gpu(index: Any, ivf: Any, sample: np.ndarray, seed: int) -> None:
    """Coarse k-means on GPU, then the rest (OPQ rotation, SQ/PQ codebooks) on CPU."""
    faiss = load_faiss()
    pre = faiss.downcast_index(index)
    x = sample
    if isinstance(pre, faiss.IndexPreTransform):  # OPQ: train the rotation first
        for i in range(pre.chain.size()):
            vt = pre.chain.at(i)
            vt.train(x)
            x = vt.apply_py(x)
    km = faiss.Kmeans(x.shape[1], ivf.nlist, niter=10, seed=seed, gpu=True, spherical=False)
    km.train(x)
    ivf.quantizer.add(km.centroids)
    ivf.quantizer.is_trained = True
    ivf.is_trained = False
    ivf.train(x)  # quantiser already filled: trains only the codebooks / SQ ranges
    ivf.is_trained = True
    index.is_trained = True


def tune_search(
    index: Any,
    factory: str,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int = 10,
    target: float = TARGET_RECALL,
    vectors: np.ndarray | None = None,
) -> tuple[SearchParams, float]:
    """The cheapest search parameters reaching recall@k >= target on held-out queries.

    Args:
        queries: (Q, D) normalised held-out queries.
        truth: (Q, >=k) exact top-k positions for those queries.
        vectors: stored vectors for exact re-ranking (used for PQ factories).

    Returns:
        (params, achieved recall@k). If no setting reaches the target, the best one found.
    """
    faiss = load_faiss()
    if "IVF" not in factory:
        found = search(index, queries, k, SearchParams())[1]
        return SearchParams(), neighbor_recall(found, truth, k)
    ivf = faiss.extract_index_ivf(index)
    hnsw = "HNSW" in factory
    # SQ8 and PQ codes cap recall (SQ8 plateaus near 0.945 recall@10 on 1M clustered vectors):
    # exact re-ranking of k * k_factor candidates against the stored vectors lifts that cap
    k_factors = K_FACTOR_GRID if vectors is not None else (1,)
    best: tuple[SearchParams, float] | None = None
    for nprobe in [p for p in NPROBE_GRID if p <= ivf.nlist]:
        for kf in k_factors:
            s = f"nprobe={nprobe}" + (f",quantizer_efSearch={max(2 * nprobe, 64)}" if hnsw else "")
            params = SearchParams(faiss=s, k_factor=kf)
            apply_params(index, params)
            found = search(index, queries, k, params, vectors)[1]
            r = neighbor_recall(found, truth, k)
            if best is None or r > best[1]:
                best = (params, r)
            if r >= target:
                log.info("tuned %s: %s k_factor=%d -> recall@%d %.3f", factory, s, kf, k, r)
                return params, r
    assert best is not None
    log.warning("%s: no setting reached recall@%d >= %.2f; best %.3f with %s", factory, k, target, best[1], best[0])
    apply_params(index, best[0])
    return best


def write_index(index: Any, path: str) -> None:
    load_faiss().write_index(index, str(path))


@dataclass
class BuiltIndex:
    """An index with the factory it was built from, its tuned search parameters and timings."""

    index: Any
    factory: str
    params: SearchParams
    recall: float | None
    queries: int
    build_sec: float
    tune_sec: float
    memory_bytes: int


def build_tuned(
    vectors: np.ndarray,
    queries: np.ndarray | None,
    *,
    factory: str = "auto",
    memory_budget_gb: float | None = None,
    use_gpu: bool = False,
    k: int = 10,
    target_recall: float = TARGET_RECALL,
    seed: int = 0,
) -> BuiltIndex:
    """Choose (``factory="auto"``), build and tune one index.

    Args:
        vectors: (N, D) database rows (float16/float32, may be a memory map).
        queries: (Q, D) held-out queries for recall tuning (None: no tuning, recall None).
    """
    n, d = vectors.shape
    chosen = choose_factory(n, d, memory_budget_gb=memory_budget_gb) if factory == "auto" else factory
    t0 = time.perf_counter()
    index = build_index(vectors, chosen, use_gpu=use_gpu, seed=seed)
    t1 = time.perf_counter()
    params, recall = SearchParams(), None
    if queries is not None and len(queries):
        q = normalize(queries)
        truth = exact_knn(vectors, q, min(k, n))[1]
        params, recall = tune_search(index, chosen, q, truth, k=min(k, n), target=target_recall, vectors=vectors)
    try:
        mem = estimate_memory_bytes(chosen, n, d)
    except ValueError:
        mem = -1
    return BuiltIndex(index, chosen, params, recall, 0 if queries is None else len(queries), t1 - t0, time.perf_counter() - t1, mem)
