"""Benchmark: the gRPC server over loopback with a `small` model and a 1M-vector bundle.

Builds (once, cached under ``--work``) a `small` AVE-Net + AVOL-Net checkpoint (random
weights: speed does not depend on them) and a bundle of ``--vectors`` random clustered
128-d vectors per modality (the index factory and search parameters the indexer's
``build_tuned`` picks for that size at recall@10 >= 0.95; the bundle format of
``avlearn.index.bundle``), starts ``serve()`` in this process on a free port with the
query cache off, and measures from client threads:

- SearchAudioByImage (a 256x256 JPEG) and Localize (1 s WAV + the JPEG) latency
  p50/p99 at 1, 8 and 32 concurrent clients (each level runs ``--seconds``);
- vector-query QPS (SearchSimilar with a fresh random vector each call, so no cache)
  as a ratio to the health Check RPC's QPS on the same server in the same run, both
  with ``--qps-clients`` client threads (goal: ratio >= 0.5).

With ``--client-processes`` the QPS comparison's clients are separate processes (as real clients
are) instead of threads of the server's process, whose Python work would share its GIL; the
server's CPU per call is then printed too.

With ``--server-processes N`` the server is ``avlearn serve --processes N`` in a child process
(N replicas on one port, ``services/replicas.py``) instead of ``serve()`` in this one; the
server CPU is then summed over the replica processes (``/proc``). Use it with ``--client-processes``.

Usage: python bench/serve.py [--vectors 1000000] [--seconds 10] [--work /tmp/avlearn-bench-serve] [--client-processes] [--server-processes N]
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def make_models(work: Path) -> tuple[Path, Path]:
    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.models import create_model

    ave, avol = work / "ave_small", work / "avol_small"
    if not (ave / "config.json").is_file():
        torch.manual_seed(0)
        save_checkpoint(ave, create_model("ave_net", "small"))
    if not (avol / "config.json").is_file():
        torch.manual_seed(1)
        save_checkpoint(avol, create_model("avol_net", "small"))
    return ave, avol


def clustered(n: int, d: int, rng: np.random.Generator, centers: int = 1000, latent: int = 16) -> np.ndarray:
    """(n, d) float16 L2-normalised vectors: ``centers`` random directions, each with points spread
    along a ``latent``-dimensional random subspace (plus a little full-rank noise), like learned
    embeddings, whose neighbourhoods have low intrinsic dimension (isotropic noise would make every
    point in a cluster nearly equidistant, which no real embedding set looks like)."""
    c = rng.standard_normal((centers, d)).astype(np.float32) / np.sqrt(d)
    proj = rng.standard_normal((latent, d)).astype(np.float32) / np.sqrt(d)
    out = np.empty((n, d), np.float16)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        z = rng.standard_normal((hi - lo, latent)).astype(np.float32)
        x = c[rng.integers(centers, size=hi - lo)] + 0.1 * z @ proj + 0.02 * rng.standard_normal((hi - lo, d)).astype(np.float32) / np.sqrt(d)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_bundle(work: Path, n: int, dim: int, checkpoint_hash: str, factory: str = "auto") -> Path:
    """A bundle in the avlearn.index.bundle format over random clustered vectors (built once).

    Indices come from the indexer's own ``build_tuned``: the factory it chooses for N vectors
    (``factory="auto"``) and the cheapest search parameters reaching recall@10 >= 0.95 against
    exact search on 500 held-out queries.
    """
    from avlearn.index.build import build_bundle_from_arrays
    from avlearn.index.manifest import MODALITIES, Manifest
    from avlearn.index.metadata import SegmentMeta

    out = work / f"bundle_{n}_{factory.replace(',', '_')}_v2"
    try:
        if Manifest.read(out).checkpoint_hash == checkpoint_hash:
            return out
    except (FileNotFoundError, ValueError):
        pass
    rng = np.random.default_rng(0)
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    vectors = {m: (ids, clustered(n, dim, rng)) for m in MODALITIES}
    segments = (SegmentMeta(int(i), f"clip{i // 10}", f"/archive/clip{i // 10}.mp4", float(i % 10), ("bench",)) for i in ids)
    build_bundle_from_arrays(out, vectors, segments, checkpoint_hash=checkpoint_hash, factory=factory, k=10)
    m = Manifest.read(out)
    print(f"built {n}-vector bundle in {time.perf_counter() - t0:.0f} s: {m.factories} {m.search_params} recall@10 {m.recall}")
    return out


def jpeg(size: int = 256) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def client_loop(address: str, call, rng: np.random.Generator, start_at: float, stop_at: float) -> tuple[list[float], int]:
    """One client: connect, wait for ``start_at``, then ``call(client, rng)`` until ``stop_at``
    (both ``time.time()``); returns (latencies s, failed calls)."""
    from avlearn_client.client import Client
    from avlearn_client.types import AvlearnError

    lat: list[float] = []
    errors = 0
    with Client(address, timeout_sec=120) as c:
        c.health()  # connect before timing
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            t = time.perf_counter()
            try:
                call(c, rng)
                lat.append(time.perf_counter() - t)
            except AvlearnError:
                errors += 1
    return lat, errors


def run_clients(address: str, clients: int, seconds: float, call) -> tuple[list[float], int]:
    """``clients`` threads calling ``call(client, rng)`` for ``seconds``; returns (latencies s, errors)."""
    stop_at = time.time() + seconds
    results: list[tuple[list[float], int]] = []

    def worker(i: int) -> None:
        results.append(client_loop(address, call, np.random.default_rng(i), 0.0, stop_at))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for lat, _ in results for x in lat], sum(err for _, err in results)


def health_call(c, rng: np.random.Generator) -> None:
    c.health()


def vector_call(c, rng: np.random.Generator, dim: int = 128) -> None:
    """SearchSimilar with a fresh random (dim,) vector, so no cache could answer it."""
    c.search_similar("audio", vector=rng.standard_normal(dim).astype(np.float32), k=10)


def run_client_processes(pool, address: str, clients: int, seconds: float, call) -> tuple[list[float], int]:
    """``run_clients`` with ``clients`` processes of ``pool`` (``call`` must be picklable), started together."""
    start_at = time.time() + 1.0  # every process connected before the clock starts
    parts = pool.starmap(client_loop, [(address, call, np.random.default_rng(i), start_at, start_at + seconds) for i in range(clients)])
    return [x for lat, _ in parts for x in lat], sum(err for _, err in parts)


def cpu_sec_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ChildServer:
    """``avlearn serve --processes N`` in a child process; ``cpu_sec()`` sums its replicas' CPU."""

    def __init__(self, args: list[str], processes: int, torch_threads: int) -> None:
        cmd = [sys.executable, "-m", "avlearn.cli", "serve", "--processes", str(processes), "--host", "127.0.0.1", "--port", "0", *args]
        env = {**os.environ, "OMP_NUM_THREADS": str(torch_threads)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            m = re.search(r"listening on (\S+:\d+)", line)
            if m:
                self.address = m.group(1)
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(lines))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # keep draining its log

    def pids(self) -> list[int]:
        """The replica processes (the server process itself when it runs without replicas)."""
        children = [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        return children or [self.proc.pid]

    def cpu_sec(self) -> float:
        return sum(cpu_sec_of(p) for p in self.pids())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--qps-clients", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("/tmp/avlearn-bench-serve"))
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--factory", default="auto", help="FAISS factory for the bundle (auto = the indexer's choice for N)")
    ap.add_argument(
        "--client-processes", action="store_true",
        help="QPS comparison from --qps-clients client processes (like real clients) instead of threads of this process, "
        "whose Python work then shares the server's GIL",
    )  # fmt: skip
    ap.add_argument("--server-processes", type=int, default=0, help="run `avlearn serve --processes N` in a child process (0 = serve() in this process)")
    args = ap.parse_args()

    import torch

    from avlearn.embed import Embedder
    from services.server import serve
    from services.settings import Limits, Settings

    torch.set_num_threads(args.torch_threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ave, avol = make_models(args.work)
    embedder = Embedder.from_checkpoint(ave, localizer=avol, device="cpu")
    bundle = make_bundle(args.work, args.vectors, embedder.dim, embedder.checkpoint_hash, args.factory)
    levels = [int(x) for x in args.levels.split(",") if x]
    top = max(levels + [args.qps_clients])
    if args.server_processes > 0:
        server = ChildServer(
            ["--bundle", str(bundle), "--checkpoint", str(ave), "--localizer-checkpoint", str(avol), "--device", "cpu", "--cache-size", "0", "--job-slots", "0",
             "--max-workers", str(top + 8), "--max-concurrent", str(top + 4), "--job-output", str(args.work / "jobs")],
            args.server_processes, args.torch_threads,
        )  # fmt: skip
        address, server_cpu_sec, stop = server.address, server.cpu_sec, server.stop
        where = f"`avlearn serve --processes {args.server_processes}` (child process)"
    else:
        settings = Settings(
            bundle=bundle, checkpoint=ave, localizer_checkpoint=avol, host="127.0.0.1", port=0, device="cpu", cache_size=0,
            max_workers=top + 8, max_concurrent=top + 4, job_slots=0, job_output=args.work / "jobs", limits=Limits(),
        )  # fmt: skip
        handle = serve(settings, embedder=embedder)
        address, server_cpu_sec, stop = handle.address, time.process_time, lambda: handle.stop(1.0)
        where = "serve() in this process"
    from avlearn_client.client import Client

    with Client(address) as c:
        info = c.index_info()
    m = info.manifest
    print(f"index: {m['factories']['audio']} search {m['search_params']['audio']} recall@10 {m.get('recall', {}).get('audio')}")
    print(
        f"server {where} on {address}: bundle {info.bundle_id} ({args.vectors} vectors x 2 modalities, dim {embedder.dim}), cpu cores {os.cpu_count()}, torch threads {args.torch_threads}"
    )
    img, audio = jpeg(), wav()
    try:
        with Client(address, timeout_sec=120) as c:  # warm-up: first forward passes, FAISS pages
            for _ in range(3):
                c.search_audio_by_image(img, k=10)
                c.localize(audio, img)
                c.search_similar("audio", vector=np.ones(embedder.dim, np.float32), k=10)
        print(f"\n{'rpc':<20s}{'clients':>8s}{'calls':>8s}{'errors':>8s}{'p50 ms':>10s}{'p99 ms':>10s}{'calls/s':>10s}")
        for name, call in (
            ("SearchAudioByImage", lambda c, rng: c.search_audio_by_image(img, k=10)),
            ("Localize", lambda c, rng: c.localize(audio, img)),
        ):
            for n in levels:
                lat, err = run_clients(address, n, args.seconds, call)
                a = np.asarray(lat) * 1000
                print(
                    f"{name:<20s}{n:>8d}{len(a):>8d}{err:>8d}{np.percentile(a, 50):>10.1f}{np.percentile(a, 99):>10.1f}{len(a) / args.seconds:>10.1f}",
                    flush=True,
                )
        calls = {"health Check": health_call, "vector query": functools.partial(vector_call, dim=embedder.dim)}
        lats: dict[str, list[float]] = {name: [] for name in calls}
        server_cpu = {name: 0.0 for name in calls}  # server CPU s (this process's with serve(): only the server's when the clients are processes)
        rounds = 4  # interleaved A/B rounds, so load from other processes hits both alike
        pool = None
        if args.client_processes:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(args.qps_clients)
        try:
            for _ in range(rounds):
                for name, call in calls.items():
                    cpu0 = server_cpu_sec()
                    if pool is not None:
                        lat, err = run_client_processes(pool, address, args.qps_clients, args.seconds / rounds, call)
                    else:
                        lat, err = run_clients(address, args.qps_clients, args.seconds / rounds, call)
                    server_cpu[name] += server_cpu_sec() - cpu0
                    assert err == 0, f"{err} failed {name} calls"
                    lats[name] += lat
        finally:
            if pool is not None:
                pool.close()
        qps = {}
        for name, lat in lats.items():
            qps[name] = len(lat) / args.seconds
            a = np.asarray(lat) * 1000
            print(
                f"{name:<20s}{args.qps_clients:>8d}{len(a):>8d}{0:>8d}{np.percentile(a, 50):>10.2f}{np.percentile(a, 99):>10.2f}{qps[name]:>10.1f}", flush=True
            )
        if pool is not None:
            for name, lat in lats.items():
                print(f"server CPU per {name}: {server_cpu[name] / len(lat) * 1e3:.3f} ms ({server_cpu[name] / args.seconds:.2f} cores busy)")
        clients = f"{args.qps_clients} client {'processes' if args.client_processes else 'threads of this process'}"
        print(
            f"\nvector-query QPS / health-Check QPS = {qps['vector query']:.0f} / {qps['health Check']:.0f} = {qps['vector query'] / qps['health Check']:.2f} (goal >= 0.5; {clients})"
        )
    finally:
        stop()


if __name__ == "__main__":
    main()
