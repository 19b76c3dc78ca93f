"""Benchmark: `avlearn serve` over loopback with a `small` model and a 1M-vector bundle, every level against one server.

Builds (once, cached under ``--work``) a `small` AVE-Net + AVOL-Net checkpoint (random
weights: speed does not depend on them) and a bundle of ``--vectors`` random clustered
128-d vectors per modality (the index factory and search parameters the indexer's
``build_tuned`` picks for that size at recall@10 >= 0.95, or ``--factory``), starts
``avlearn serve --processes N`` (default 1) as a child process with the query cache off, and
drives it from ``--client-processes`` client processes (threads within them when a level has
more clients than processes), each thread a `Client` making calls back to back:

1. health Check vs vector query (SearchSimilar with a fresh random vector per call, so no cache
   could answer it), ``--qps-clients`` clients, interleaved rounds → **vector / Check** (goal >= 0.8);
2. SearchAudioByImage (a 256x256 JPEG) at ``--levels`` clients → p50 / p99 / calls/s, and at the
   top level **image→audio / Check** (goal >= 0.2, p99 <= 100 ms);
3. Localize (1 s WAV + the JPEG) at ``--levels`` → calls/s, and at the top level the ratio to
   ``--localize-reference`` (the old figure, re-run on this machine; goal >= 2);
4. ``--soak-clients`` (128) image→audio clients for ``--soak-seconds`` (30): refusals seen by the
   clients vs ``avlearn_rejected_total`` read from the server's /metrics, p99 (goal: no refusal
   while the queue has room);
5. the same against a second server whose queue is smaller than the client count
   (``--overload-queue``; 0 = skip): every refusal the clients see must be in the metrics.

The server's CPU per call (from /proc, summed over replicas) is printed for the QPS rounds.

Usage: python bench/serve.py [--vectors 1000000] [--factory IVF1024,SQ8] [--seconds 10] [--processes 1] [--localize-reference 80.6]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
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


# -- clients (run in client processes; everything picklable by name) ---------------------------

CALLS = ("check", "vector", "image2audio", "localize")


def _caller(name: str, dim: int):
    img, audio = jpeg(), wav()
    if name == "check":
        return lambda c, rng: c.health()
    if name == "vector":
        return lambda c, rng: c.search_similar("audio", vector=rng.standard_normal(dim).astype(np.float32), k=10)
    if name == "image2audio":
        return lambda c, rng: c.search_audio_by_image(img, k=10)
    if name == "localize":
        return lambda c, rng: c.localize(audio, img)
    raise ValueError(f"unknown call {name!r}; one of {CALLS}")


def client_process(address: str, call: str, dim: int, threads: int, seed: int, start_at: float, stop_at: float) -> tuple[list[float], dict[str, int]]:
    """``threads`` clients in this process, each calling ``call`` back to back from ``start_at`` to
    ``stop_at`` (``time.time()``); returns (latencies s of OK calls, failed calls by status code)."""
    from avlearn_client.client import Client
    from avlearn_client.types import AvlearnError

    fn = _caller(call, dim)
    lat: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def run(i: int) -> None:
        rng = np.random.default_rng(seed * 1000 + i)
        mine: list[float] = []
        failed: Counter[str] = Counter()
        with Client(address, timeout_sec=120, retries=0) as c:
            c.health()  # connected before the clock starts
            time.sleep(max(0.0, start_at - time.time()))
            while time.time() < stop_at:
                t = time.perf_counter()
                try:
                    fn(c, rng)
                    mine.append(time.perf_counter() - t)
                except AvlearnError as exc:
                    failed[exc.code] += 1
        with lock:
            lat.extend(mine)
            errors.update(failed)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, dict(errors)


class Clients:
    """A pool of client processes; ``run(call, clients, seconds)`` spreads ``clients`` threads over them."""

    def __init__(self, processes: int, dim: int) -> None:
        import multiprocessing

        self.processes = processes
        self.dim = dim
        self.pool = multiprocessing.get_context("spawn").Pool(processes)

    def run(self, address: str, call: str, clients: int, seconds: float) -> tuple[np.ndarray, dict[str, int]]:
        procs = min(self.processes, clients)
        per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        start_at = time.time() + 1.0 + 0.02 * clients  # every thread connected before the clock starts
        parts = self.pool.starmap(client_process, [(address, call, self.dim, n, i, start_at, start_at + seconds) for i, n in enumerate(per)])
        errors: Counter[str] = Counter()
        for _, e in parts:
            errors.update(e)
        return np.asarray([x for lat, _ in parts for x in lat]) * 1000, dict(errors)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


# -- the server ---------------------------------------------------------------------------------


def cpu_sec_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ChildServer:
    """``avlearn serve --processes N`` in a child process; ``cpu_sec()`` sums its replicas' CPU, ``rejected()`` reads /metrics."""

    def __init__(self, args: list[str], processes: int, torch_threads: int) -> None:
        cmd = [sys.executable, "-m", "avlearn.cli", "serve", "--processes", str(processes), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", *args]
        env = {**os.environ, "OMP_NUM_THREADS": str(torch_threads)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.log: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            m = re.search(r"listening on (\S+:\d+).*metrics on((?: ?:\d+)+)", line)
            if m:
                self.address = m.group(1)
                self.metrics_ports = [int(p) for p in re.findall(r":(\d+)", m.group(2))]
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: [self.log.append(x) for x in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def pids(self) -> list[int]:
        """The replica processes (the server process itself when it runs without replicas)."""
        children = [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        replicas = [p for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        return replicas or [self.proc.pid]

    def cpu_sec(self) -> float:
        return sum(cpu_sec_of(p) for p in self.pids())

    def metric(self, name: str) -> dict[str, float]:
        """Samples of counter ``name`` summed over the replicas, by label text."""
        out: Counter[str] = Counter()
        for port in self.metrics_ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$", text, flags=re.M):
                out[labels] += float(value)
        return dict(out)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _row(name: str, clients: int, lat: np.ndarray, errors: dict[str, int], seconds: float) -> str:
    p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("nan"), float("nan"))
    return f"{name:<20s}{clients:>8d}{len(lat):>9d}{sum(errors.values()):>8d}{p50:>10.2f}{p99:>10.2f}{len(lat) / seconds:>10.1f}"


HEADER = f"{'rpc':<20s}{'clients':>8s}{'calls':>9s}{'errors':>8s}{'p50 ms':>10s}{'p99 ms':>10s}{'calls/s':>10s}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--factory", default="auto", help="FAISS factory for the bundle (auto = the indexer's choice for N)")
    ap.add_argument("--seconds", type=float, default=10.0, help="per level (the QPS comparison: in all)")
    ap.add_argument("--levels", default="1,8,32", help="client counts for image→audio and Localize")
    ap.add_argument("--qps-clients", type=int, default=16)
    ap.add_argument("--client-processes", type=int, default=8)
    ap.add_argument("--processes", type=int, default=1, help="server processes (`avlearn serve --processes N`)")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--localize-reference", type=float, default=0.0, help="Localize calls/s at the top level of the old server, run on this machine (0 = none)")
    ap.add_argument("--soak-clients", type=int, default=128)
    ap.add_argument("--soak-seconds", type=float, default=30.0)
    ap.add_argument("--overload-queue", type=int, default=64, help="queue of a second server driven by --soak-clients clients (0 = skip that level)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/avlearn-bench-serve"))
    ap.add_argument(
        "--server-arg", action="append", default=[], help="one more `avlearn serve` argument (repeatable), e.g. --server-arg=--max-batch-delay-ms=1"
    )
    args = ap.parse_args()

    import torch

    from avlearn.embed import Embedder

    torch.set_num_threads(args.torch_threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ave, avol = make_models(args.work)
    embedder = Embedder.from_checkpoint(ave, localizer=avol, device="cpu")
    bundle = make_bundle(args.work, args.vectors, embedder.dim, embedder.checkpoint_hash, args.factory)
    levels = [int(x) for x in args.levels.split(",") if x]
    server_args = [
        "--bundle", str(bundle), "--checkpoint", str(ave), "--localizer-checkpoint", str(avol), "--device", "cpu", "--cache-size", "0", "--job-slots", "0",
        "--job-output", str(args.work / "jobs"), *args.server_arg,
    ]  # fmt: skip
    server = ChildServer(server_args, args.processes, args.torch_threads)
    clients = Clients(args.client_processes, embedder.dim)
    from avlearn_client.client import Client

    try:
        with Client(server.address) as c:
            info = c.index_info()
            for _ in range(3):  # warm-up: first forward passes, FAISS pages
                c.search_audio_by_image(jpeg(), k=10)
                c.localize(wav(), jpeg())
                c.search_similar("audio", vector=np.ones(embedder.dim, np.float32), k=10)
        m = info.manifest
        print(f"index: {m['factories']['audio']} search {m['search_params']['audio']} recall@10 {m.get('recall', {}).get('audio')}")
        print(
            f"server: `avlearn serve --processes {args.processes}` on {server.address} {' '.join(args.server_arg)}: bundle {info.bundle_id} "
            f"({args.vectors} vectors x 2 modalities, dim {embedder.dim}); cpu cores {os.cpu_count()}, torch threads {args.torch_threads}; "
            f"clients: {args.client_processes} processes (threads within them past that)"
        )

        # 1. Check vs vector query, interleaved rounds
        rounds = 4
        lat: dict[str, list[np.ndarray]] = {"check": [], "vector": []}
        errs: dict[str, Counter[str]] = {"check": Counter(), "vector": Counter()}
        cpu = {"check": 0.0, "vector": 0.0}
        for _ in range(rounds):
            for call in lat:
                cpu0 = server.cpu_sec()
                got, e = clients.run(server.address, call, args.qps_clients, args.seconds / rounds)
                cpu[call] += server.cpu_sec() - cpu0
                lat[call].append(got)
                errs[call].update(e)
        qps = {}
        print("\n" + HEADER)
        for call, name in (("check", "health Check"), ("vector", "vector query")):
            a = np.concatenate(lat[call])
            qps[call] = len(a) / args.seconds
            print(_row(name, args.qps_clients, a, dict(errs[call]), args.seconds), f"  server CPU {cpu[call] / max(1, len(a)) * 1e3:.3f} ms/call", flush=True)

        # 2-3. image→audio and Localize at each level
        top: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        for call, name in (("image2audio", "SearchAudioByImage"), ("localize", "Localize")):
            for n in levels:
                a, e = clients.run(server.address, call, n, args.seconds)
                print(_row(name, n, a, e, args.seconds), flush=True)
                top[call] = (a, e)

        # 4. soak: many clients, queue with room
        rej0 = server.metric("avlearn_rejected_total")
        a, e = clients.run(server.address, "image2audio", args.soak_clients, args.soak_seconds)
        rej = {k: v - rej0.get(k, 0.0) for k, v in server.metric("avlearn_rejected_total").items()}
        print(_row("SearchAudioByImage", args.soak_clients, a, e, args.soak_seconds), f"  ({args.soak_seconds:g} s soak)", flush=True)
        soak = (a, e, rej)
    finally:
        server.stop()

    overload = None
    if args.overload_queue > 0:
        small = ChildServer([*server_args, "--max-queue", str(args.overload_queue)], args.processes, args.torch_threads)
        try:
            with Client(small.address) as c:
                c.search_audio_by_image(jpeg(), k=10)
            rej0 = small.metric("avlearn_rejected_total")
            a, e = clients.run(small.address, "image2audio", args.soak_clients, args.seconds)
            rej = {k: v - rej0.get(k, 0.0) for k, v in small.metric("avlearn_rejected_total").items()}
            print(_row("SearchAudioByImage", args.soak_clients, a, e, args.seconds), f"  (queue of {args.overload_queue} per process)", flush=True)
            overload = (a, e, rej)
        finally:
            small.stop()
    clients.close()

    # ratios, all from this run
    print()
    print(f"vector-query QPS / health-Check QPS = {qps['vector']:.0f} / {qps['check']:.0f} = {qps['vector'] / qps['check']:.2f} (goal >= 0.8)")
    top_n = max(levels)
    a, e = top["image2audio"]
    i2a = len(a) / args.seconds
    print(
        f"image→audio at {top_n} clients / health-Check QPS = {i2a:.0f} / {qps['check']:.0f} = {i2a / qps['check']:.2f} (goal >= 0.2); "
        f"p99 {np.percentile(a, 99):.1f} ms (goal <= 100); errors {sum(e.values())}"
    )
    loc = len(top["localize"][0]) / args.seconds
    if args.localize_reference > 0:
        print(f"Localize at {top_n} clients / reference = {loc:.1f} / {args.localize_reference:.1f} = {loc / args.localize_reference:.2f} (goal >= 2)")
    else:
        print(f"Localize at {top_n} clients: {loc:.1f} calls/s (no --localize-reference given)")
    a, e, rej = soak
    refused = e.get("RESOURCE_EXHAUSTED", 0)
    print(
        f"soak: {args.soak_clients} clients x {args.soak_seconds:g} s: {len(a)} calls, p99 {np.percentile(a, 99):.1f} ms, refused {refused} "
        f"(goal 0 while the queue has room), avlearn_rejected_total +{sum(rej.values()):.0f} {rej or ''}, other errors {sum(e.values()) - refused}"
    )
    if overload is not None:
        a, e, rej = overload
        refused = e.get("RESOURCE_EXHAUSTED", 0)
        print(
            f"overload: {args.soak_clients} clients, queue {args.overload_queue}: {len(a)} calls answered, {refused} refused as seen by the clients, "
            f"avlearn_rejected_total +{sum(rej.values()):.0f} {rej or ''} (goal: equal), other errors {sum(e.values()) - refused}"
        )


if __name__ == "__main__":
    main()
