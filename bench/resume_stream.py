"""Resume of a streaming AVC run by cursor, timed: the cost of continuing at ~80 % of an epoch over shards.

    python bench/resume_stream.py --out runs/bench_resume                 # 120 videos x 6 s, hop 0.25 s, shards of 4 clips
    python bench/resume_stream.py --out runs/bench_resume --videos 40     # smaller

Steps: a synthetic world (``make_world``), ``avlearn prepare`` into shards, then with the
``--preset`` (default ``test_tiny``) on CPU: (1) an uninterrupted run of one epoch + 2 steps; (2) the same run
stopped (``stop_at``) at 80 % of epoch 0 and resumed. Prints the epoch's wall time, the resumed
run's time to its first batch (cursor: only the current group's shard headers are read again),
what the old resume (iterate and discard the consumed batches) costs on the same data, and
whether the resumed losses equal the uninterrupted run's step by step. Writes ``OUT/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--videos", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=6.0, help="video length")
    ap.add_argument("--hop-sec", type=float, default=0.25, help="prepare's hop (0.25: 4 jitter candidates per slot)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preset", default="test_tiny", help="model preset (the epoch's time includes the training steps)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from avlearn.data.prepare import prepare
    from avlearn.data.synth import make_world
    from training.data_order import DataCursor
    from training.loop import train
    from training.tasks import get_task

    out = Path(args.out)
    world, shards = out / "world", out / "shards"
    t0 = time.perf_counter()
    if not (world / "world.json").exists():
        make_world(world, videos=args.videos, seconds=args.seconds, size_px=96, categories=8, seed=1, davis=0, workers=1, progress=False)
    prepare(str(world / "splits" / "train.csv"), shards, workers=2, frame_size_px=96, clips_per_shard=4, hop_sec=args.hop_sec, progress=False)
    print(f"world + shards: {time.perf_counter() - t0:.1f} s, {len(list(shards.glob('*.tar')))} shards")

    task = get_task("avc", {})
    ds = task.make_dataset(str(shards), task.build_model(args.preset), split="train", seed=0)
    n = max(1, args.workers)
    per_epoch = sum(len(list(ds.plan(w, n))) // args.batch_size for w in range(n))
    stop = round(0.8 * per_epoch)
    steps = per_epoch + 2
    kw = dict(preset=args.preset, steps=steps, batch_size=args.batch_size, device="cpu", seed=0, workers=args.workers, progress=False)

    def run(name: str, **more):
        return train("avc", str(shards), out / name, **kw, **more)

    for name in ("full", "resumed"):
        if (out / name).exists():
            import shutil

            shutil.rmtree(out / name)
    full = run("full", ckpt_every=10**6)
    epoch_sec = full["elapsed_sec"] * per_epoch / steps
    run("resumed", stop_at=stop)
    rest = run("resumed", resume=True)

    # the old resume: iterate the epoch from its start and discard what was consumed
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers, drop_last=True)
    ds.set_epoch(0)
    t0 = time.perf_counter()
    it = iter(loader)
    for _ in range(stop + 1):
        b = next(it)
    skip_sec = time.perf_counter() - t0
    del it
    # the cursor alone: hand it to the dataset and time the first batch (no training step around it)
    cur = DataCursor(args.workers)
    ds.set_epoch(0)
    for i, b in enumerate(loader):
        cur.observe(b)
        if i + 1 == stop:
            break
    ds.set_epoch(0)
    cur.apply(ds, 0)
    t0 = time.perf_counter()
    next(iter(loader))
    cursor_sec = time.perf_counter() - t0

    a, r = losses(out / "full"), losses(out / "resumed")
    same = sorted(a) == sorted(r) and all(math.isclose(a[s], r[s], rel_tol=1e-6, abs_tol=1e-7) for s in a)
    res = {
        "preset": args.preset,
        "videos": args.videos,
        "shards": len(list(shards.glob("*.tar"))),
        "batches_per_epoch": per_epoch,
        "stop_at": stop,
        "epoch_sec": epoch_sec,
        "resumed_first_batch_sec": rest["first_batch_sec"],
        "cursor_first_batch_sec": cursor_sec,
        "old_skip_first_batch_sec": skip_sec,
        "losses_equal": same,
    }
    (out / "bench.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(
        f"resume at batch {stop}/{per_epoch}: first new batch after {rest['first_batch_sec']:.3f} s in train() "
        f"({100 * rest['first_batch_sec'] / epoch_sec:.1f} % of the epoch's {epoch_sec:.2f} s); cursor alone {cursor_sec:.3f} s; "
        f"old skip-by-decoding {skip_sec:.3f} s; losses equal: {same}"
    )


if __name__ == "__main__":
    main()
