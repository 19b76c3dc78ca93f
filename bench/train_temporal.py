"""Benchmark: Shuffle-and-Learn and Odd-One-Out trained from raw video of the motion world on CPU, then evaluated.

For each task: ``training.loop.train`` (the same path as ``avlearn train TASK``) on the train
split of the motion world (``avlearn synth --kind motion``: the category of a video is how its
object moves; appearance is drawn independently of it), then ``avlearn eval TASK`` on its
held-out test split: pretext accuracy, and the action probe (``avlearn.eval.probe``) — clip
features of the frozen trunk, a linear classifier and a k-NN fitted on the train split's
labelled videos and scored on the test split's, beside the mean of 5 random-weight trunks and
the same architecture trained supervised from scratch on the train split. Then the pretext
accuracy on a folder of real videos (default ../shared/data/video; no bar there).

Bars (issue 20): shuffle_learn held-out accuracy >= 0.85 (chance 0.5), odd_one_out >= 0.6
(chance 1/6), each trunk's linear-probe accuracy on the declared layer (``BAR_LAYER``, the trunk
output) >= the mean random-weight trunk's + 0.10, each run within 20 minutes of training on 2 CPU
cores (``--threads 2``; pin the process with ``taskset -c 0,1`` to be exact).

Usage:
    python bench/train_temporal.py --out runs/bench_temporal [--world DIR] [--tasks shuffle_learn,odd_one_out]
        [--steps-shuffle-learn 4000] [--steps-odd-one-out 5000] [--threads 2] [--real ../shared/data/video]
A missing ``--world`` is generated with the defaults of ``avlearn synth --kind motion`` (400
videos x 8 s, 25 fps, 64 px, seed 0; split 320/40/40 by video).
Odd-One-Out figures are labelled by encoder (default: stacked frames; ``--set odd_one_out:encoder=dynamic``).
Writes OUT/<task>/ (run dir), OUT/<task>_eval.json, OUT/<task>_real.json and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BARS = {"shuffle_learn": 0.85, "odd_one_out": 0.6}
PROBE_MARGIN = 0.10
MAX_TRAIN_SEC = 20 * 60
DEFAULT_LR = {"shuffle_learn": 1e-3, "odd_one_out": 2e-3}
ENCODER_NAMES = {"frames": "frames, fused late", "stacked": "stacked frames", "differences": "frame + frame differences", "dynamic": "dynamic images"}


def _val_history(run_dir: Path) -> list[list[float]]:
    """[step, accuracy] of every validation in the run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [[r["step"], round(r["acc"], 4)] for r in rows if r.get("split") == "val"]


def _probe_row(probe: dict) -> dict:
    """The action probe in short: per layer [linear, k-NN] trained / mean random and the deltas; the supervised reference."""
    layers = {
        name: {
            "trained": [r["trained"]["linear"], r["trained"]["knn"]], "random": [r["random"]["linear"], r["random"]["knn"]],
            "random_linear_per_init": r["random"]["linear_per_init"], "delta_linear": r["delta_linear"], "delta_knn": r["delta_knn"],
        }
        for name, r in probe.get("layers", {}).items()
    }  # fmt: skip
    keys = ("input", "pool", "moments", "train_clips", "test_clips", "classes", "majority", "bar_layer", "skipped_reason")
    return {**{k: probe.get(k) for k in keys}, "layers": layers, "supervised": probe.get("supervised")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench_temporal")
    ap.add_argument("--world", default=None, help="synthetic world dir (generated when missing)")
    ap.add_argument("--videos", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--tasks", default="shuffle_learn,odd_one_out")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps-shuffle-learn", type=int, default=4000)
    ap.add_argument("--steps-odd-one-out", type=int, default=5000)
    ap.add_argument("--batch-shuffle-learn", type=int, default=32)
    ap.add_argument("--batch-odd-one-out", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None, help="learning rate of every task (default: shuffle_learn 1e-3, odd_one_out 2e-3)")
    ap.add_argument("--set", dest="options", action="append", default=[], metavar="TASK:KEY=VALUE", help="task option, e.g. odd_one_out:gap=4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video"))
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--supervised-epochs", type=int, default=30, help="epochs of the supervised-from-scratch reference (0: skipped)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = Path(args.world) if args.world else out / "world"
    if not (world / "splits" / "test.csv").is_file():
        from avlearn.data.motion_world import make_motion_world

        t0 = time.perf_counter()
        make_motion_world(
            world, videos=args.videos, seed=args.world_seed, seconds=args.seconds, fps=25, size_px=args.size, workers=max(1, min(os.cpu_count() or 1, 8))
        )
        print(f"motion world: {args.videos} videos in {time.perf_counter() - t0:.0f} s -> {world}", flush=True)

    from avlearn.eval.registry import get_eval
    from training.loop import train

    summary: dict = {"world": str(world), "threads": args.threads, "preset": args.preset, "tasks": {}}
    for task in [t for t in args.tasks.split(",") if t]:
        opts = {kv.split(":", 1)[1].split("=", 1)[0]: kv.split("=", 1)[1] for kv in args.options if kv.startswith(task + ":")}
        steps = args.steps_shuffle_learn if task == "shuffle_learn" else args.steps_odd_one_out
        lr = args.lr if args.lr is not None else DEFAULT_LR[task]
        batch = args.batch_shuffle_learn if task == "shuffle_learn" else args.batch_odd_one_out
        run_dir = out / task
        t0 = time.perf_counter()
        res = train(
            task,
            str(world),
            run_dir,
            preset=args.preset,
            steps=steps,
            batch_size=batch,
            lr=lr,
            seed=args.seed,
            device="cpu",
            options=opts,
            val_every=max(1, steps // 5),
            progress=False,
        )
        train_sec = time.perf_counter() - t0
        ev = get_eval(task)(
            checkpoint=res["best_checkpoint"], data=str(world), split="test", samples=args.eval_samples, seed=args.seed, device="cpu",
            supervised_epochs=args.supervised_epochs,
        )  # fmt: skip
        (out / f"{task}_eval.json").write_text(json.dumps(ev, indent=2, default=str))
        real = None
        if args.real and Path(args.real).is_dir():
            real = get_eval(task)(
                checkpoint=res["best_checkpoint"],
                data=args.real,
                split="test",
                samples=min(400, args.eval_samples),
                seed=args.seed,
                device="cpu",
                no_probe=True,
            )
            (out / f"{task}_real.json").write_text(json.dumps(real, indent=2, default=str))
        acc = ev["pretext"]["accuracy"]
        probe = ev.get("probe", {})
        label = task if task == "shuffle_learn" else f"{task} ({ENCODER_NAMES.get(ev['encoder'], ev['encoder'])})"
        row = {
            "label": label,
            "steps": steps,
            "batch_size": batch,
            "lr": lr,
            "options": opts,
            "train_sec": round(train_sec, 1),
            "samples_per_sec": res["samples_per_sec"],
            "val_accuracy": _val_history(run_dir),
            "heldout_accuracy": acc,
            "chance": ev["chance"],
            "bar": BARS.get(task),
            "probe": _probe_row(probe),
            "delta_linear": probe.get("delta_linear"),
            "delta_knn": probe.get("delta_knn"),
            "real_accuracy": real["pretext"]["accuracy"] if real else None,
            "real_videos": real["videos"] if real else None,
            "pass_accuracy": acc >= BARS.get(task, 0.0),
            "pass_time": train_sec <= MAX_TRAIN_SEC,
            # the declared layer's linear probe (BAR_LAYER), nothing else
            "pass_probe": probe.get("delta_linear") is not None and probe["delta_linear"] >= PROBE_MARGIN,
        }
        summary["tasks"][task] = row
        print(json.dumps({task: row}, indent=2, default=str), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    ok = all(r["pass_accuracy"] and r["pass_time"] and r["pass_probe"] for r in summary["tasks"].values())
    print("ALL BARS MET" if ok else "SOME BARS MISSED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
