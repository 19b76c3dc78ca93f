"""Benchmark: peak memory and time of `avlearn eval avc` at N and 10N clips with a fixed ``--max-segments``.

A world of N clips is generated (``make_world``, labels per clip); the 10N archive holds each
of its videos ten times under new names (hard links: new paths, so new clips to the draw, no
new disk space), listed with their labels in a manifest csv, as is the N archive. Each
measurement runs in a fresh process (so one run's high-water mark never leaks into the
next) and prints:

- ``peak_rss_mb``: the process's RSS high-water mark (VmHWM) during the call: reset just before
  it (``/proc/self/clear_refs``), so it is the peak of the evaluation, including what the
  interpreter, torch and the model already held (``base_rss_mb``, VmRSS before the call);
- ``eval_rss_mb``: peak_rss_mb - base_rss_mb, what the evaluation itself added;
- ``tracemalloc_peak_mb``: the peak of Python and numpy allocations during the call;
- ``seconds``: wall time of the call; segments and clips decoded.

Modes: ``stream`` is ``evaluate_avc`` (sample before decoding); ``decode_all`` decodes the
whole archive at the model's input size with ``load_segment_records``, which is what the
evaluation did before it streamed (then it kept ``--max-segments`` of them); shown for contrast.
The bar: stream's peak RSS at 10N <= 1.3 x at N.

``--shards`` also prepares both archives (``avlearn prepare``, frames at the model's size) and
evaluates the shard dirs the same way.

Usage: python bench/eval_memory.py [--clips 200] [--factor 10] [--max-segments 200] [--preset test_tiny] [--work DIR] [--shards]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def link_archives(world: Path, work: Path, factor: int) -> tuple[Path, Path]:
    """(manifest of the world's N clips, manifest of factor x N clips): hard links of each video under new names (new clip ids)."""
    with open(world / "labels.csv", newline="") as f:
        rows = [(world / r["path"], r["label"], r["visible"]) for r in csv.DictReader(f)]
    small, big = work / "n.csv", work / f"{factor}n.csv"
    links = work / "links"
    links.mkdir(exist_ok=True)
    with open(small, "w", newline="") as fs, open(big, "w", newline="") as fb:
        ws, wb = csv.writer(fs), csv.writer(fb)
        ws.writerow(["path", "label", "visible"])
        wb.writerow(["path", "label", "visible"])
        for path, label, visible in rows:
            ws.writerow([os.path.relpath(path, work), label, visible])
            for k in range(factor):
                link = links / f"{path.stem}_{k}{path.suffix}"
                if not link.exists():
                    os.link(path, link)
                wb.writerow([os.path.relpath(link, work), label, visible])
    return small, big


def make_archives(work: Path, clips: int, factor: int, seconds: float) -> tuple[Path, Path]:
    """(manifest of N clips, manifest of factor x N clips): a generated world and hard links of its videos."""
    from avlearn.data.synth import make_world

    world = work / "world"
    if not (world / "world.json").exists():
        make_world(world, videos=clips, seconds=seconds, size_px=64, categories=4, davis=0, workers=1, progress=False, seed=0)
    return link_archives(world, work, factor)


def child(mode: str, data: str, checkpoint: str, max_segments: int) -> dict:
    """One measurement in this process (see the module docstring)."""
    import torch

    from avlearn.data.segments import load_segment_records
    from avlearn.embed import Embedder
    from avlearn.eval.avc import evaluate_avc

    torch.set_num_threads(1)
    emb = Embedder.from_checkpoint(checkpoint, device="cpu")
    base = _status_mb("VmRSS")
    reset = _reset_peak()  # else VmHWM still holds the peak of the imports
    tracemalloc.start()
    t0 = time.perf_counter()
    if mode == "stream":
        out = evaluate_avc(checkpoint, data, max_segments=max_segments, device="cpu")
        segments, decoded = out["segments"], out["sample"]["clips_decoded"]
        extra = {"accuracy_all": out["trained"]["avc"]["accuracy_all"], "image->audio_mAP": out["trained"]["retrieval"]["image->audio"]["mAP"]}
    else:
        recs = load_segment_records(data, size_px=emb.image_size_px, sample_rate_hz=emb.sample_rate_hz, segment_sec=emb.segment_sec, hop_sec=emb.segment_sec)
        segments, decoded, extra = len(recs), len({r.clip_id for r in recs}), {}
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = _status_mb("VmHWM")
    return {
        "mode": mode, "peak_rss_mb": round(rss, 1), "base_rss_mb": round(base, 1), "eval_rss_mb": round(rss - base, 1), "peak_reset": reset,
        "tracemalloc_peak_mb": round(peak / 2**20, 1), "seconds": round(seconds, 2), "segments": segments, "clips_decoded": decoded, **extra,
    }  # fmt: skip


def measure(mode: str, data: Path, checkpoint: Path, max_segments: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(data), str(checkpoint), str(max_segments)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200, help="N: clips of the generated world")
    ap.add_argument("--factor", type=int, default=10, help="the large archive has factor x N clips")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    ap.add_argument("--max-segments", type=int, default=200)
    ap.add_argument("--preset", default="test_tiny", help="ave_net preset of the (random-init) checkpoint")
    ap.add_argument("--work", default=None, help="folder for the world and manifests (default: a temp dir)")
    ap.add_argument("--no-decode-all", action="store_true", help="skip the decode-everything contrast")
    ap.add_argument("--shards", action="store_true", help="also prepare both archives into shard dirs (avlearn prepare) and evaluate those")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "DATA", "CHECKPOINT", "MAX_SEGMENTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, data, ckpt, max_seg = args.child
        print(json.dumps(child(mode, data, ckpt, int(max_seg))))
        return 0

    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.models import create_model

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="eval_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    small, big = make_archives(work, args.clips, args.factor, args.seconds)
    print(f"archives: {args.clips} and {args.factor * args.clips} clips of {args.seconds} s under {work} ({time.perf_counter() - t0:.0f} s)")
    torch.manual_seed(0)
    ckpt = save_checkpoint(work / "ckpt", create_model("ave_net", args.preset))
    rows = []
    for mode in ("stream",) if args.no_decode_all else ("stream", "decode_all"):
        for name, data in (("N", small), (f"{args.factor}N", big)):
            r = measure(mode, data, ckpt, args.max_segments)
            rows.append(r)
            print(json.dumps({"archive": name, "clips": args.clips * (args.factor if name != "N" else 1), **r}))
    if args.shards:
        from avlearn.data.prepare import prepare

        size = int(create_model("ave_net", args.preset).preprocessing["image_size_px"][0])
        for name, data in (("N", small), (f"{args.factor}N", big)):
            out = work / f"shards_{name}_{size}px"
            t1 = time.perf_counter()
            prepare(data, out, workers=2, frame_size_px=size, progress=False)
            print(f"prepared {out} ({time.perf_counter() - t1:.0f} s)")
            r = measure("stream", out, ckpt, args.max_segments)
            rows.append(r)
            print(json.dumps({"archive": name + " shards", "clips": args.clips * (args.factor if name != "N" else 1), **r}))
    s_n, s_10n = rows[0], rows[1]
    ratio = s_10n["peak_rss_mb"] / s_n["peak_rss_mb"]
    print(
        f"stream: peak RSS {s_n['peak_rss_mb']} MB at N, {s_10n['peak_rss_mb']} MB at {args.factor}N: ratio {ratio:.3f} "
        f"({'meets' if ratio <= 1.3 else 'FAILS'} <= 1.3); eval's own RSS {s_n['eval_rss_mb']} -> {s_10n['eval_rss_mb']} MB; "
        f"tracemalloc peak {s_n['tracemalloc_peak_mb']} -> {s_10n['tracemalloc_peak_mb']} MB; time {s_n['seconds']} -> {s_10n['seconds']} s"
    )
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
