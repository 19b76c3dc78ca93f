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

``--quality OUT``: the tracking figures, trained with no DAVIS frames at all. A synthetic world
(``make_world(videos=24, seed=3, davis=6, seconds=6)`` unless ``--world``) gives raw training
video (``world/videos``) and six DAVIS-layout renders that are never trained on
(``world/davis``); the real videos of ``--extra-videos`` (default ../shared/data/video, none of
them a DAVIS sequence) are added to the training data. The colorizer is trained with
``training.loop.train`` (``--train-steps``), then ``avlearn.eval.tracking.evaluate_tracking``
scores it, its random-weights twin, raw-Lab propagation and copy-first-mask on the synthetic
renders (``--scale 2``) and on the real DAVIS sequences of ``--davis``. Before training, the
training specs are checked to hold none of the evaluated sequences (and the evaluation checks it
again from the checkpoint); the output says so. Bars (issue 20): real J&F >= raw Lab + 0.03 and
>= copy + 0.30; synthetic held-out J&F >= 0.70.

Usage: python bench/track.py [--davis ../shared/data/davis] [--sequence blackswan] [--preset small] [--checkpoint C]
       python bench/track.py --quality runs/bench_track [--world W] [--train-steps 1300] [--extra-videos DIR]
"""

from __future__ import annotations

import argparse
import json
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


def bench_quality(args: argparse.Namespace) -> int:
    """Train the colorizer on raw video only, then J&F on held-out synthetic renders and real DAVIS (see the module docstring)."""
    from avlearn.eval.tracking import evaluate_tracking, training_frame_folders, training_overlap
    from training.loop import train

    out = Path(args.quality)
    out.mkdir(parents=True, exist_ok=True)
    world = Path(args.world) if args.world else out / "world"
    if not (world / "davis" / "JPEGImages").is_dir():
        from avlearn.data.synth import make_world

        make_world(world, videos=24, seed=3, davis=6, seconds=6, workers=2, progress=False)
    specs = [str(world / "videos")] + ([args.extra_videos] if args.extra_videos and Path(args.extra_videos).is_dir() else [])
    evals = {"synthetic": (world / "davis", args.scale_synthetic)}
    if Path(args.davis).is_dir():
        evals["real"] = (Path(args.davis), 1.0)
    from avlearn.data.davis import list_sequences

    for name, (root, _) in evals.items():  # leak check before any training
        seqs = list_sequences(root)
        seen = training_overlap({"data": ",".join(specs)}, root, seqs, "480p")
        assert not seen, f"training data holds evaluated {name} sequences: {seen}"
        print(
            f"held out: {name} ({root}): none of {len(seqs)} sequences is in the training data {specs} ({len(training_frame_folders({'data': ','.join(specs)}))} frame folders)"
        )
    t0 = time.perf_counter()
    res = train(
        "colorization", ",".join(specs), out / "color", preset=args.preset, steps=args.train_steps, batch_size=args.batch, lr=1e-3, device="cpu",
        val_every=max(1, args.train_steps // 2), progress=False, warmup=min(50, args.train_steps // 10),
    )  # fmt: skip
    train_sec = time.perf_counter() - t0
    print(f"train  colorization {args.train_steps} x {args.batch} in {train_sec:.0f} s ({res['samples_per_sec']:.1f} samples/s), val {res['val']}")
    summary: dict = {"training_data": specs, "train_sec": round(train_sec, 1), "steps": args.train_steps, "evals": {}}
    for name, (root, scale) in evals.items():
        m = evaluate_tracking(str(root), checkpoint=res["best_checkpoint"], scale=scale, progress=False)
        summary["evals"][name] = m
        print(f"{name} ({root}, scale {scale}): {m['held_out']['statement']}; frames scored: {m['frames_scored']}")
        for method, r in m["methods"].items():
            per_seq = " ".join(f"{seq} {v['J&F']:.3f}" for seq, v in r["sequences"].items())
            print(f"  {method:6s} J&F {r['J&F']:.3f} (J {r['J']:.3f}, F {r['F']:.3f})   {per_seq}")
    bars = {}
    if "real" in summary["evals"]:
        r = summary["evals"]["real"]["methods"]
        bars["real_vs_lab"] = r["model"]["J&F"] >= r["lab"]["J&F"] + 0.03
        bars["real_vs_copy"] = r["model"]["J&F"] >= r["copy"]["J&F"] + 0.30
    bars["synthetic"] = summary["evals"]["synthetic"]["methods"]["model"]["J&F"] >= 0.70
    summary["bars"] = bars
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("bars:", bars)
    return 0 if all(bars.values()) else 1


def main() -> int:
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
    p.add_argument("--quality", default=None, metavar="OUT", help="train on raw video only and report J&F on held-out sequences (see above)")
    p.add_argument("--world", default=None, help="--quality: synthetic world with davis renders (generated when missing)")
    p.add_argument("--extra-videos", default=str(root.parent / "shared" / "data" / "video"), help="--quality: more raw training video")
    p.add_argument("--train-steps", type=int, default=1300)
    p.add_argument("--scale-synthetic", type=float, default=2.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quality:
        return bench_quality(args)
    train = bench_train(args.preset, args.batch, args.steps)
    print(
        f"train  {args.preset}: {train['samples_per_sec_wall']:.1f} samples/s wall, {train['samples_per_cpu_sec']:.1f} samples/CPU-s ({args.threads} threads)"
    )
    if not Path(args.davis).is_dir():
        print(f"track: skipped ({args.davis} absent)")
        return 0
    tr = bench_track(Path(args.davis), args.sequence, args.frames, args.preset, args.checkpoint)
    for name in ("model", "lab"):
        r = tr[name]
        print(
            f"track  {name:5s} {tr['size_px'][1]}x{tr['size_px'][0]}: {r['frames_per_sec_wall']:.2f} frames/s wall, {r['frames_per_cpu_sec']:.2f} frames/CPU-s"
        )
    print(f"ratio  model/lab fps: {tr['model_over_lab']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
