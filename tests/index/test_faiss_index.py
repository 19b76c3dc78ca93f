"""Factory choice, exact search, recall tuning (real FAISS)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from index_helpers import clustered

from avlearn.index import faiss_index as fi
from avlearn.index import faiss_search as fs


def test_small_n_is_exact_flat():
    assert fi.choose_factory(10_000, 128) == "Flat"
    assert fi.choose_factory(199_999, 128, memory_budget_gb=1.0) == "Flat"


def test_large_n_without_budget_is_ivf_hnsw_sq8():
    f = fi.choose_factory(20_000_000, 128)
    assert f.startswith("IVF") and "_HNSW32" in f and f.endswith(",SQ8")


def test_large_n_small_budget_is_opq_pq():
    f = fi.choose_factory(20_000_000, 128, memory_budget_gb=1.0)
    assert f.startswith("OPQ") and ",PQ" in f
    assert fi.estimate_memory_bytes(f, 20_000_000, 128) <= 2**30
    # a roomier budget buys a bigger code
    bigger = fi.choose_factory(20_000_000, 128, memory_budget_gb=2.0)
    assert int(bigger.rsplit("PQ", 1)[1]) > int(f.rsplit("PQ", 1)[1])


def test_small_n_tiny_budget_leaves_flat():
    assert fi.choose_factory(150_000, 128, memory_budget_gb=0.02) != "Flat"


def test_impossible_budget_raises():
    with pytest.raises(fi.MemoryBudgetError):
        fi.choose_factory(20_000_000, 128, memory_budget_gb=0.01)


def test_exact_knn_matches_numpy():
    db = clustered(3000, 32, seed=1)
    q = clustered(20, 32, seed=2)
    _, pos = fs.exact_knn(db, q, 10, chunk_rows=700)  # chunked merge
    ref = np.argsort(-(q @ db.T), axis=1)[:, :10]
    assert fs.neighbor_recall(pos, ref, 10) == 1.0


def test_rerank_of_one_query_equals_batched_rerank_and_exact_order():
    """The single-query fast path (serving) and the batched path agree, and both re-score exactly."""
    db = clustered(2000, 32, seed=4).astype(np.float16)
    q = fs.normalize(clustered(8, 32, seed=5))
    rng = np.random.default_rng(0)
    pos = rng.integers(0, len(db), (8, 20))
    pos[0, 5:] = -1  # fewer valid candidates than k
    pos[1, ::3] = -1
    s_all, p_all = fs._rerank(q, pos, db, 10)
    for i in range(len(q)):
        s1, p1 = fs._rerank(q[i : i + 1], pos[i : i + 1], db, 10)
        n = p1.shape[1]
        assert np.array_equal(p1[0], p_all[i, :n]) and np.allclose(s1[0], s_all[i, :n], atol=1e-6)
        assert (p_all[i, n:] == -1).all()  # the batched path marks missing results with -1
        exact = db[p1[0]].astype(np.float32) @ q[i]
        assert np.allclose(s1[0], exact, atol=1e-6) and (np.diff(s1[0]) <= 0).all()
    assert p_all.shape == (8, 10) and fs._rerank(q[:1], pos[:1], db, 10)[1].shape == (1, 5)


@pytest.mark.parametrize("factory", ["IVF256_HNSW32,SQ8", "IVF256_HNSW32,PQ16"])
def test_tuning_reaches_recall_target_on_50k(factory):
    t0 = time.perf_counter()
    db = clustered(50_000, 32, clusters=64, seed=3)
    q = clustered(50_200, 32, clusters=64, seed=3)[50_000:]  # same mixture, held out
    built = fi.build_tuned(db, q, factory=factory, k=10, target_recall=0.95)
    assert built.factory == factory
    assert built.recall is not None and built.recall >= 0.95
    assert "nprobe=" in built.params.faiss
    # the tuned parameters really deliver the recall when searched again
    truth = fs.exact_knn(db, fs.normalize(q), 10)[1]
    fs.apply_params(built.index, built.params)
    found = fs.search(built.index, fs.normalize(q), 10, built.params, db)[1]
    assert fs.neighbor_recall(found, truth, 10) >= 0.95
    # nprobe=1 alone is not enough on this data: tuning mattered
    low = fs.SearchParams(faiss="nprobe=1,quantizer_efSearch=64")
    fs.apply_params(built.index, low)
    assert fs.neighbor_recall(fs.search(built.index, fs.normalize(q), 10, low)[1], truth, 10) < 0.95
    assert time.perf_counter() - t0 < 60
