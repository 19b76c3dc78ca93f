"""Index benchmark: auto factory vs exact Flat on clustered 128-d vectors.

Prints build time, recall@10 against exact search (on held-out queries not used for
tuning), single-query latency p50/p99 with one FAISS thread, and batch QPS (all threads).

    python bench/index.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from avlearn.index import faiss_index as fi
from avlearn.index import faiss_search as fs


def mixture(n: int, d: int, clusters: int, seed: int, spread: float = 0.5, chunk: int = 200_000) -> np.ndarray:
    """(n, d) float32 L2-normalised Gaussian-mixture vectors (centres fixed by seed 0)."""
    centres = np.random.default_rng(0).standard_normal((clusters, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        x = centres[rng.integers(0, clusters, m)] + spread * rng.standard_normal((m, d)).astype(np.float32)
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def measure(index, params: fs.SearchParams, queries: np.ndarray, truth: np.ndarray, vectors: np.ndarray, k: int, single: int) -> dict:
    import faiss

    fs.apply_params(index, params)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    lat = []
    for q in queries[:single]:
        t = time.perf_counter()
        fs.search(index, q[None], k, params, vectors)
        lat.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    found = fs.search(index, queries, k, params, vectors)[1]
    batch = time.perf_counter() - t
    return {
        "recall@10": round(fs.neighbor_recall(found, truth, k), 4),
        "p50_ms": round(1e3 * float(np.percentile(lat, 50)), 3),
        "p99_ms": round(1e3 * float(np.percentile(lat, 99)), 3),
        "batch_qps": round(len(queries) / batch, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000, help="half tune, half evaluate")
    ap.add_argument("--single", type=int, default=300, help="queries timed one by one")
    ap.add_argument("--memory-budget-gb", type=float, default=None)
    ap.add_argument("--factory", default="auto")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    k = 10
    import faiss

    print(f"FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs", flush=True)
    t = time.perf_counter()
    db = mixture(args.n, args.d, args.clusters, seed=1)
    q = mixture(args.queries, args.d, args.clusters, seed=2)
    tune_q, eval_q = q[: args.queries // 2], q[args.queries // 2 :]
    print(f"data: {args.n} x {args.d} ({args.clusters} clusters) in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    truth = fs.exact_knn(db, eval_q, k)[1]
    exact_sec = time.perf_counter() - t
    rows = {}
    t = time.perf_counter()
    flat = fi.build_index(db, "Flat")
    rows["Flat (exact)"] = {
        "factory": "Flat",
        "build_sec": round(time.perf_counter() - t, 2),
        "memory_gb": round(fi.estimate_memory_bytes("Flat", args.n, args.d) / 2**30, 3),
        **measure(flat, fs.SearchParams(), eval_q, truth, db, k, args.single),
    }
    del flat
    built = fi.build_tuned(db, tune_q, factory=args.factory, memory_budget_gb=args.memory_budget_gb, k=k)
    rows["auto"] = {
        "factory": built.factory,
        "params": built.params.to_dict(),
        "tuned_recall@10": round(built.recall or 0, 4),
        "build_sec": round(built.build_sec, 2),
        "tune_sec": round(built.tune_sec, 2),
        "memory_gb": round(built.memory_bytes / 2**30, 3),
        **measure(built.index, built.params, eval_q, truth, db, k, args.single),
    }
    ref, auto = rows["Flat (exact)"], rows["auto"]
    ratios = {
        "p50_speedup": round(ref["p50_ms"] / auto["p50_ms"], 2),
        "batch_qps_ratio": round(auto["batch_qps"] / ref["batch_qps"], 2),
        "memory_ratio": round(auto["memory_gb"] / ref["memory_gb"], 3),
    }
    print(f"\n{'':14s} {'factory':34s} {'build s':>8s} {'recall@10':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'batch QPS':>10s} {'mem GB':>7s}")
    for name, r in rows.items():
        print(
            f"{name:14s} {r['factory']:34s} {r['build_sec']:8.1f} {r['recall@10']:9.4f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['batch_qps']:10.1f} {r['memory_gb']:7.3f}"
        )
    print(f"auto vs Flat: single-query p50 {ratios['p50_speedup']}x faster, batch QPS x{ratios['batch_qps_ratio']}, memory x{ratios['memory_ratio']}")
    result = {
        "n": args.n,
        "d": args.d,
        "clusters": args.clusters,
        "eval_queries": len(eval_q),
        "exact_truth_sec": round(exact_sec, 2),
        "rows": rows,
        "ratios": ratios,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
