"""Benchmark: memory of `avlearn serve --processes 2` on a large bundle, FAISS indices memory-mapped vs read into RAM.

Builds (once, cached under ``--work``) a bundle of ``--vectors`` vectors per modality with the
indexer's own factory choice and tuning (``build_bundle_from_arrays``, ``factory="auto"``), starts
``avlearn serve --processes N`` on it twice (default: indices memory-mapped; then
``--index-in-ram``), sends ``--queries`` vector queries per modality (SearchSimilar, random
stored vectors, so searches touch inverted lists all over the index), and prints per replica
VmRSS / RssAnon / RssFile (``/proc/PID/status``) and PSS (``/proc/PID/smaps_rollup``: shared
pages split between the processes that map them), their sums, and the bundle's size on disk.

The vectors: with ``--embeddings DIR`` (an ``avlearn embed`` output of a trained model), N
vectors per modality are drawn around that model's real embeddings: each is a random real
embedding of the modality plus a random projection of 16-d Gaussian noise (0.1 scale) plus a
little full-rank noise, renormalised ("random-projected real embeddings": they keep the real
set's directions, not its size). Without it: ``bench/serve.py``'s clustered random vectors.

The server embeds with a random-weights `small` AVE-Net of the same dimension (memory does not
depend on the weights); the bundle is stamped with that model's hash so the server accepts it.

Usage: python bench/serve_scale.py --vectors 2000000 --embeddings runs/demo/embeddings [--processes 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from serve import ChildServer, clustered, make_models


def real_embeddings(emb: Path) -> dict[str, np.ndarray]:
    """Per modality, (M, D) float32 normalised vectors of the finished shards of an ``avlearn embed`` dir."""
    from avlearn.index.faiss_search import normalize
    from avlearn.pipeline.writer import done_units, read_shard

    out: dict[str, list[np.ndarray]] = {"image": [], "audio": []}
    for u in sorted(done_units(emb)):
        s = read_shard(emb, u)
        out["image"].append(np.asarray(s.image, np.float32))
        out["audio"].append(np.asarray(s.audio, np.float32)[s.has_audio.astype(bool)])
    return {m: normalize(np.concatenate(v)) for m, v in out.items() if v and sum(map(len, v))}


def around(base: np.ndarray, n: int, rng: np.random.Generator, latent: int = 16, chunk: int = 200_000) -> np.ndarray:
    """(n, D) float16 normalised vectors: random rows of ``base`` plus projected low-rank noise."""
    d = base.shape[1]
    proj = rng.standard_normal((latent, d)).astype(np.float32) / np.sqrt(d)
    out = np.empty((n, d), np.float16)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        z = rng.standard_normal((hi - lo, latent)).astype(np.float32)
        x = base[rng.integers(len(base), size=hi - lo)] + 0.1 * z @ proj + 0.02 * rng.standard_normal((hi - lo, d)).astype(np.float32) / np.sqrt(d)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_bundle(work: Path, n: int, dim: int, checkpoint_hash: str, embeddings: Path | None, queries: int) -> Path:
    from avlearn.index.build import build_bundle_from_arrays
    from avlearn.index.manifest import MODALITIES, Manifest
    from avlearn.index.metadata import SegmentMeta

    out = work / f"bundle_{n}_{'real' if embeddings else 'clustered'}"
    try:
        if Manifest.read(out).checkpoint_hash == checkpoint_hash:
            return out
    except (FileNotFoundError, ValueError):
        pass
    rng = np.random.default_rng(0)
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    if embeddings:
        real = real_embeddings(embeddings)
        if any(v.shape[1] != dim for v in real.values()):
            raise SystemExit(f"{embeddings} holds {next(iter(real.values())).shape[1]}-d embeddings; the server's model has {dim}")
        print(f"real embeddings from {embeddings}: " + ", ".join(f"{m} {len(v)}" for m, v in real.items()))
        vectors = {m: (ids, around(real[m], n, rng)) for m in MODALITIES}
    else:
        vectors = {m: (ids, clustered(n, dim, rng)) for m in MODALITIES}
    segments = (SegmentMeta(int(i), f"clip{i // 10}", f"/archive/clip{i // 10}.mp4", float(i % 10), ("bench",)) for i in ids)
    build_bundle_from_arrays(out, vectors, segments, checkpoint_hash=checkpoint_hash, factory="auto", k=10, queries=queries)
    m = Manifest.read(out)
    print(f"built {n}-vector bundle in {time.perf_counter() - t0:.0f} s: {m.factories} {m.search_params} recall@10 {m.recall} build_sec {m.build_sec}")
    return out


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (``/proc/PID/status``) and Pss (``/proc/PID/smaps_rollup``) in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["Pss"] = int(line.split()[1])
    return out


def disk_sizes(bundle: Path) -> dict[str, int]:
    root = bundle.resolve()
    return {p.name: p.stat().st_size for p in sorted(root.iterdir()) if p.is_file()}


def drive(address: str, bundle: Path, queries: int, clients: int) -> float:
    """``queries`` SearchSimilar calls per modality with stored vectors (random rows), from ``clients`` threads
    on a TCP connection each (so the kernel spreads them over the replicas); returns seconds."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from avlearn.index.manifest import MODALITIES, vectors_file
    from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2

    vecs = {m: np.load(vectors_file(bundle.resolve(), m), mmap_mode="r") for m in MODALITIES}
    rng = np.random.default_rng(1)
    rows = {m: np.sort(rng.choice(len(v), queries, replace=False)) for m, v in vecs.items()}
    mods = {"audio": types_pb2.MODALITY_AUDIO, "image": types_pb2.MODALITY_IMAGE}

    def run(i: int) -> None:
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:  # its own connection
            stub = service_pb2_grpc.AvlearnServiceStub(ch)
            for m in MODALITIES:
                for r in rows[m][i::clients]:
                    vec = types_pb2.Vector(values=np.asarray(vecs[m][r], np.float32).tolist())
                    stub.SearchSimilar(service_pb2.SearchSimilarRequest(modality=mods[m], query=types_pb2.MediaInput(vector=vec), k=10), timeout=120)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(run, range(clients)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=2_000_000, help="vectors per modality")
    ap.add_argument("--embeddings", type=Path, default=None, help="an `avlearn embed` output dir of a trained model (see the module docstring)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--queries", type=int, default=2000, help="SearchSimilar calls per modality and mode, before memory is read")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tune-queries", type=int, default=200, help="held-out queries for the build's recall tuning")
    ap.add_argument("--work", type=Path, default=Path("/tmp/avlearn-bench-serve-scale"))
    args = ap.parse_args()

    import torch

    from avlearn.embed import Embedder

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    ave, _ = make_models(args.work)
    embedder = Embedder.from_checkpoint(ave, device="cpu")
    bundle = make_bundle(args.work, args.vectors, embedder.dim, embedder.checkpoint_hash, args.embeddings, args.tune_queries)
    sizes = disk_sizes(bundle)
    mib = 2**20
    print(f"bundle {bundle.resolve()} on disk: {sum(sizes.values()) / mib:.1f} MiB (" + ", ".join(f"{k} {v / mib:.1f}" for k, v in sizes.items()) + " MiB)")
    faiss_mib = sum(v for k, v in sizes.items() if k.endswith(".faiss")) / mib
    print(f"FAISS index files: {faiss_mib:.1f} MiB")
    del embedder
    for mode, extra in (("mmap", []), ("in-RAM", ["--index-in-ram"])):
        server_args = ["--bundle", str(bundle), "--checkpoint", str(ave), "--device", "cpu", "--cache-size", "0", "--job-slots", "0", "--job-output", str(args.work / "jobs"), *extra]  # fmt: skip
        t0 = time.perf_counter()
        server = ChildServer(server_args, args.processes, 1)
        started = time.perf_counter() - t0
        try:
            idle = {p: memory_of(p) for p in server.pids()}
            sec = drive(server.address, bundle, args.queries, args.clients)
            busy = {p: memory_of(p) for p in server.pids()}
            sup = memory_of(server.proc.pid) if server.proc.pid not in busy else None
        finally:
            server.stop()
        print(f"\n== {mode}: `avlearn serve --processes {args.processes}` started in {started:.1f} s; {2 * args.queries} queries in {sec:.1f} s")
        print(f"{'replica pid':>12s} {'state':>6s} {'VmRSS MiB':>10s} {'RssAnon':>9s} {'RssFile':>9s} {'PSS MiB':>9s}")
        for state, table in (("idle", idle), ("busy", busy)):
            for pid, m in table.items():
                print(f"{pid:>12d} {state:>6s} {m['VmRSS'] / 1024:>10.1f} {m['RssAnon'] / 1024:>9.1f} {m['RssFile'] / 1024:>9.1f} {m['Pss'] / 1024:>9.1f}")
        tot = {k: sum(m[k] for m in busy.values()) / 1024 for k in ("VmRSS", "RssAnon", "RssFile", "Pss")}
        print(f"{'replicas':>12s} {'sum':>6s} {tot['VmRSS']:>10.1f} {tot['RssAnon']:>9.1f} {tot['RssFile']:>9.1f} {tot['Pss']:>9.1f}")
        if sup:
            print(
                f"{'supervisor':>12s} {'':>6s} {sup['VmRSS'] / 1024:>10.1f} {sup['RssAnon'] / 1024:>9.1f} {sup['RssFile'] / 1024:>9.1f} {sup['Pss'] / 1024:>9.1f}"
            )
        total_pss = tot["Pss"] + (sup["Pss"] / 1024 if sup else 0.0)
        print(f"machine total of the server (PSS, replicas + supervisor): {total_pss:.1f} MiB; bundle on disk {sum(sizes.values()) / mib:.1f} MiB")
    print(f"\nhost: {os.cpu_count()} cores; vectors per modality {args.vectors}")


if __name__ == "__main__":
    main()
