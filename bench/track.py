"""Benchmark: colorization training samples/s and mask-propagation frames/s at 480p, on CPU.

Training: forward + backward + AdamW step of the colorizer on clips of 4 frames
(3 references + target) at the preset's size, batch ``--batch``; samples/s over
``--steps`` timed steps after one warm-up. Tracking: ``avlearn.track.propagate_masks``
on the first ``--frames`` frames of a DAVIS 480p sequence (854x480), first frame plus
3 previous frames as references, top-10, radius 12 cells; the learned embeddings
(``--checkpoint``, or an untrained model of ``--preset``: the speed is the same) and
the raw-Lab baseline. The reference ratio printed is model fps / Lab fps (the cost
of the learned features over raw pixels).

Both use ``--threads`` torch threads (default 2). CPU seconds (``time.process_time``)
are printed beside wall seconds: on a shared, loaded machine the CPU figure is fair.

Usage: python bench/track.py [--davis ../shared/data/davis] [--sequence blackswan] [--preset small] [--checkpoint C]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def bench_train(preset: str, batch: int, steps: int) -> dict:
    from avlearn.models import create_model

    model = create_model("colorizer", preset)
    model.set_color_centers(torch.randn(model.config.num_colors, 2) * 25)
    h, w = model.config.image_size_px
    gen = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (batch, model.config.num_refs + 1, h, w, 3), dtype=torch.uint8, generator=gen)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step() -> None:
        out = model(clips)
        loss = F.nll_loss(out["log_probs"], out["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"samples_per_sec_wall": steps * batch / wall, "samples_per_cpu_sec": steps * batch / cpu}


def bench_track(davis: Path, sequence: str, frames_n: int, preset: str, checkpoint: str | None) -> dict:
    from avlearn.data.davis import load_sequence
    from avlearn.models import create_model
    from avlearn.track import TrackConfig, lab_features, load_features, model_features, propagate_masks

    frames, masks = load_sequence(davis, sequence)
    frames = frames[:frames_n]
    feats = load_features(checkpoint) if checkpoint else model_features(create_model("colorizer", preset))
    out = {"size_px": list(frames.shape[1:3])}
    for name, f in (("model", feats), ("lab", lab_features(4))):
        w0, c0 = time.perf_counter(), time.process_time()
        list(propagate_masks(frames, masks[0], f, TrackConfig()))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        out[name] = {"frames_per_sec_wall": len(frames) / wall, "frames_per_cpu_sec": len(frames) / cpu}
    out["model_over_lab"] = out["model"]["frames_per_sec_wall"] / out["lab"]["frames_per_sec_wall"]
    return out


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--davis", default=str(root.parent / "shared" / "data" / "davis"))
    p.add_argument("--sequence", default="blackswan")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--preset", default="small")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train = bench_train(args.preset, args.batch, args.steps)
    print(
        f"train  {args.preset}: {train['samples_per_sec_wall']:.1f} samples/s wall, {train['samples_per_cpu_sec']:.1f} samples/CPU-s ({args.threads} threads)"
    )
    if not Path(args.davis).is_dir():
        print(f"track: skipped ({args.davis} absent)")
        return
    tr = bench_track(Path(args.davis), args.sequence, args.frames, args.preset, args.checkpoint)
    for name in ("model", "lab"):
        r = tr[name]
        print(
            f"track  {name:5s} {tr['size_px'][1]}x{tr['size_px'][0]}: {r['frames_per_sec_wall']:.2f} frames/s wall, {r['frames_per_cpu_sec']:.2f} frames/CPU-s"
        )
    print(f"ratio  model/lab fps: {tr['model_over_lab']:.2f}")


if __name__ == "__main__":
    main()
