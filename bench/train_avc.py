"""AVE-Net and AVOL-Net on a synthetic world, end to end, against the issue's targets.

    python bench/train_avc.py --out runs/bench_avc                      # the full run (640 videos, 8 categories x 28 instances, 20 min each)
    python bench/train_avc.py --out runs/bench_avc_small --videos 60 --minutes 3   # a reduced run
    python bench/train_avc.py --out runs/bench_tp --videos 24 --seconds 4 --throughput --steps 40   # loop settings only

``--workers``, ``--log-every``, ``--accum-steps``, ``--channels-last`` and ``--compile`` are the
training loop's flags (``avlearn train``). ``--throughput`` skips the evaluation: for each model it
prints the data pipeline alone, the model step alone, and ``--steps`` training steps under each of
workers 0 / auto x metrics synced every step / every 10 steps (samples/s at the last step, before
the final validation), and writes ``OUT/throughput.json``.

Steps: make a world (``avlearn.data.synth.make_world``); for each model train the
``small`` preset on the train split within ``--minutes`` of wall-clock (the step count
is calibrated from timed steps, so the cosine schedule ends on time), keeping the
best checkpoint on the val split; evaluate it on the test split (videos of instances
never trained on) and on test_seen (new videos of training instances) beside the same
architecture with random weights (``avlearn.eval.avc.evaluate_avc``); measure the
training samples/s and, apart, the data pipeline's samples/s and the model step's
samples/s, and say which one bounds training. Writes ``OUT/bench.json`` and prints
the targets with PASS/FAIL.

Targets (held-out test split, issue 19; protocols in docs/metrics.md): AVC accuracy >= 0.80
over all negatives (the paper's protocol); image→audio and audio→image mAP >= 0.5 (own clip
excluded, relevance = the query's sounding category, tie-aware); pointing accuracy >= 0.7;
cIoU@0.5 and AUC (LVS reference protocol) reported with their ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

TARGETS = {"avc_accuracy_all": 0.80, "map_image_to_audio": 0.50, "map_audio_to_image": 0.50, "pointing_accuracy": 0.70}
RANDOM_RATIO = 3.0  # mAP must also be >= 3x the same architecture's at random weights


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def measure_rates(
    task_name: str,
    options: dict[str, str],
    data: str,
    preset: str,
    batch_size: int,
    workers: int | str,
    batches: int = 20,
    device: str = "cpu",
    channels_last: str = "auto",
) -> dict[str, float]:
    """Samples/s of the data pipeline alone (DataLoader over the task's dataset) and of the model step alone."""
    from training.config import resolve_workers
    from training.loop import to_channels_last, use_channels_last
    from training.tasks import get_task

    task = get_task(task_name, options)
    model = task.build_model(preset)
    t0 = time.perf_counter()
    ds = task.make_dataset(data, model, split="train", seed=0)
    build_sec = time.perf_counter() - t0
    workers = resolve_workers(workers, ds, batch_size)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    it = iter(loader)
    for _ in range(max(1, 2 * workers)):  # warm-up: every worker started, lazy imports done
        batch = next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        b = next(it, None)
        if b is None:
            break
        n += b["label"].shape[0]
    data_rate = n / (time.perf_counter() - t0)
    dev = torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    model.to(dev)
    batch = {k: v.to(dev) for k, v in batch.items()}
    if use_channels_last(channels_last, model, dev):
        model.to(memory_format=torch.channels_last)
        batch = to_channels_last(batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        out = task.compute(model, batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(max(3, batches // 2)):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    model_rate = max(3, batches // 2) * batch_size / (time.perf_counter() - t0)
    return {
        "dataset_build_sec": build_sec,
        "data_samples_per_sec": data_rate,
        "model_samples_per_sec": model_rate,
        "segments": len(ds) // 2,
        "workers": workers,
    }


def loop_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The training loop's throughput settings from the command line."""
    return {"workers": args.workers, "log_every": args.log_every, "accum_steps": args.accum_steps, "channels_last": args.channels_last, "compile": args.compile}


def compare_throughput(model: str, world: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``args.steps`` training steps under workers 0 / auto x sync every step / every 10; samples/s of each."""
    from training.loop import train

    options = {"model": model, **dict(kv.split("=", 1) for kv in args.set)}
    steps = args.steps or 40
    result: dict[str, Any] = {"steps": steps, "batch_size": args.batch_size, "runs": []}
    for workers in ("0", "auto"):
        rates = measure_rates("avc", options, str(world), args.preset, args.batch_size, workers, device=args.device, channels_last=args.channels_last)
        result[f"alone_workers_{workers}"] = rates
        print(
            f"[{model}] workers {workers} (= {rates['workers']}): data pipeline alone {rates['data_samples_per_sec']:.0f} samples/s, "
            f"model step alone {rates['model_samples_per_sec']:.0f} samples/s",
            flush=True,
        )
    for workers in ("0", "auto"):
        for log_every in (1, 10):
            run_dir = out / f"{model}_w{workers}_sync{log_every}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            flags = {**loop_flags(args), "workers": workers, "log_every": log_every}
            t0 = time.perf_counter()
            summary = train(
                "avc", str(world), run_dir, preset=args.preset, steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                options=options, val_every=steps, progress=False, warmup=args.warmup, weight_decay=args.weight_decay, **flags,
            )  # fmt: skip
            rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
            last = [r for r in rows if r["split"] == "train"][-1]
            used = json.loads((run_dir / "run_config.json").read_text())["workers"]
            run = {
                "workers": workers,
                "workers_used": used,
                "log_every": log_every,
                "train_samples_per_sec": last["samples_per_sec"],
                "data_wait_fraction": summary["data_wait_fraction"],
                "wall_sec": time.perf_counter() - t0,
            }
            result["runs"].append(run)
            print(
                f"[{model}] workers {workers} (= {used}), sync every {log_every:2d} step(s): training {run['train_samples_per_sec']:.1f} samples/s "
                f"(data wait {run['data_wait_fraction']:.2f} of the run, {run['wall_sec']:.1f} s with dataset build and final validation)",
                flush=True,
            )
    return result


def run_model(model: str, world: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from avlearn.eval.avc import evaluate_avc
    from training.loop import train

    options = {"model": model, **dict(kv.split("=", 1) for kv in args.set)}
    rates = measure_rates("avc", options, str(world), args.preset, args.batch_size, args.workers, device=args.device, channels_last=args.channels_last)
    data_sec, model_sec = args.batch_size / rates["data_samples_per_sec"], args.batch_size / rates["model_samples_per_sec"]
    # workers=0: loading and the step share one process, their times add up; else they overlap
    sec_per_step = (data_sec + model_sec if rates["workers"] == 0 else max(data_sec, model_sec)) * args.accum_steps
    budget = args.minutes * 60 - rates["dataset_build_sec"] * 2 - 30  # train + val datasets, checkpoints
    steps = args.steps or max(50, int(0.85 * budget / sec_per_step))
    print(
        f"[{model}] data {rates['data_samples_per_sec']:.0f} samples/s, model step {rates['model_samples_per_sec']:.0f} samples/s → {steps} steps", flush=True
    )
    run_dir = out / model
    t0 = time.perf_counter()
    summary = train(
        "avc",
        str(world),
        run_dir,
        preset=args.preset,
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        options=options,
        val_every=max(1, steps // args.validations),
        progress=not args.no_progress,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        **loop_flags(args),
    )
    train_sec = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_avc(run_dir / "best", str(world), split="test", random_weights=True, device=args.device, max_segments=args.eval_segments)
    seen = None
    if (world / "splits" / "test_seen.csv").is_file():  # new videos of training instances: the seen/unseen gap
        seen = evaluate_avc(run_dir / "best", str(world), split="test_seen", random_weights=True, device=args.device, max_segments=args.eval_segments)
    eval_sec = time.perf_counter() - t0
    bottleneck = "data pipeline" if rates["data_samples_per_sec"] < rates["model_samples_per_sec"] else "model step"
    return {
        "options": options,
        "steps": steps,
        "train_wall_sec": train_sec,
        "eval_wall_sec": eval_sec,
        "train_summary": summary,
        "rates": {**rates, "train_samples_per_sec": summary["samples_per_sec"], "data_wait_fraction": summary["data_wait_fraction"], "bottleneck": bottleneck},
        "eval": ev,
        "eval_seen": seen,
    }


def _get(d: dict, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d  # type: ignore[return-value]


def report(results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Side-by-side tables (trained vs random weights) for unseen and seen instances, and the target checks."""
    lines = ["held-out videos of UNSEEN instances (split test: the figures the targets apply to)", *_table(results, "eval")]
    if any(results[m].get("eval_seen") for m in results):
        lines += ["", "held-out videos of SEEN instances (split test_seen: new videos of training instances)", *_table(results, "eval_seen")]
    checks = _checks(results)
    lines.append("")
    for k, c in checks.items():
        v = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        extra = f" vs random {c['random']:.3f} (ratio {c['ratio']:.2f}, target >= {RANDOM_RATIO})" if c.get("ratio") is not None else ""
        lines.append(f"{'PASS' if c['pass'] else 'FAIL'}  {k} = {v} (target >= {c['target']}){extra}")
    for m in results:
        r = results[m]["rates"]
        lines.append(
            f"{m}: training {r['train_samples_per_sec']:.1f} samples/s; data pipeline alone {r['data_samples_per_sec']:.0f} samples/s; "
            f"model step alone {r['model_samples_per_sec']:.1f} samples/s → bottleneck: {r['bottleneck']}"
        )
    return "\n".join(lines), checks


def _table(results: dict[str, Any], which: str) -> list[str]:
    """One row per metric, one column per model x (trained, random weights)."""
    rows = [
        ("AVC acc, all negatives (paper)", ("avc", "accuracy_all")),
        ("AVC acc, negatives not on screen", ("avc", "accuracy_not_visible")),
        ("image→audio mAP", ("retrieval", "image->audio", "mAP")),
        ("image→audio mAP, chance", ("retrieval", "image->audio", "chance_mAP")),
        ("audio→image mAP", ("retrieval", "audio->image", "mAP")),
        ("image→audio R@1", ("retrieval", "image->audio", "recall@1")),
        ("image→audio nDCG@30", ("retrieval", "image->audio", "nDCG@30")),
        ("image→image mAP", ("retrieval", "image->image", "mAP")),
        ("audio→audio mAP", ("retrieval", "audio->audio", "mAP")),
        ("pointing accuracy", ("localization", "pointing_accuracy")),
        ("cIoU@0.5", ("localization", "cIoU@0.5")),
        ("cIoU AUC", ("localization", "AUC")),
        ("ceiling cIoU@0.5", ("localization", "ceiling_cIoU@0.5")),
        ("ceiling AUC", ("localization", "ceiling_AUC")),
    ]
    models = [m for m in results if results[m].get(which)]
    header = f"{'metric':34s}" + "".join(f"{m + ' ' + side:>22s}" for m in models for side in ("trained", "random"))
    lines = [header]
    for name, keys in rows:
        cells = []
        for m in models:
            for side in ("trained", "random_weights"):
                v = _get(results[m][which].get(side, {}), *keys)
                cells.append(f"{v:22.3f}" if isinstance(v, (int, float)) else f"{'-':>22s}")
        lines.append(f"{name:34s}" + "".join(cells))
    return lines


def _checks(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on the unseen-instance split; mAP also >= RANDOM_RATIO x its random-weights row."""
    ev = {m: results.get(m, {}).get("eval", {}) for m in ("ave_net", "avol_net")}
    paths = {
        "avc_accuracy_all": ("ave_net", ("avc", "accuracy_all")),
        "map_image_to_audio": ("ave_net", ("retrieval", "image->audio", "mAP")),
        "map_audio_to_image": ("ave_net", ("retrieval", "audio->image", "mAP")),
        "pointing_accuracy": ("avol_net", ("localization", "pointing_accuracy")),
    }
    checks: dict[str, Any] = {}
    for k, (model, keys) in paths.items():
        value, rand = _get(ev[model].get("trained", {}), *keys), _get(ev[model].get("random_weights", {}), *keys)
        ok = value is not None and value >= TARGETS[k]
        c: dict[str, Any] = {"value": value, "target": TARGETS[k], "random": rand}
        if k.startswith("map_") and value is not None and rand:
            c["ratio"] = value / rand
            ok = ok and c["ratio"] >= RANDOM_RATIO
        c["pass"] = ok
        checks[k] = c
    return checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench_avc")
    p.add_argument("--world", default=None, help="an existing world (default: make one in OUT/world)")
    p.add_argument("--videos", type=int, default=640, help="videos in the world (train split ≈ 80%%)")
    p.add_argument("--categories", type=int, default=8)
    p.add_argument("--instances", type=int, default=28, help="instances per category (1: the template-matching world)")
    p.add_argument("--heldout-instances", type=float, default=0.25, help="fraction of each category's instances never trained on (split test)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--models", nargs="+", default=["ave_net", "avol_net"])
    p.add_argument("--preset", default="small")
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget per model (training)")
    p.add_argument("--steps", type=int, default=None, help="fixed step count instead of the time budget")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=0.03)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--validations", type=int, default=8)
    p.add_argument("--eval-segments", type=int, default=2000)
    p.add_argument("--workers", default="auto", help="DataLoader workers: auto | N (as avlearn train)")
    p.add_argument("--log-every", type=int, default=10, help="sync metrics to the host every N steps")
    p.add_argument("--accum-steps", type=int, default=1, help="batches per optimizer step")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--throughput", action="store_true", help="only compare the loop's throughput settings (no evaluation); see the module doc")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="avc task option")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = Path(args.world) if args.world else out / "world"
    world_info: dict[str, Any] = {}
    if not (world / "world.json").exists():
        from avlearn.data.synth import make_world

        t0 = time.perf_counter()
        world_info = make_world(
            world,
            videos=args.videos,
            categories=args.categories,
            instances=args.instances,
            heldout_instances=args.heldout_instances,
            seconds=args.seconds,
            size_px=args.size,
            seed=args.seed,
            davis=0,
            workers=2,
            progress=not args.no_progress,
        )
        world_info = {"counts": world_info.get("counts"), "elapsed_sec": time.perf_counter() - t0}
    else:
        world_info = {"counts": json.loads((world / "world.json").read_text()).get("counts")}
    print(f"world {world}: {world_info}", flush=True)
    if args.throughput:
        tp = {m: compare_throughput(m, world, out, args) for m in args.models}
        payload = {"args": vars(args), "world": world_info, "throughput": tp, "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
        (out / "throughput.json").write_text(json.dumps(payload, indent=2, default=str))
        return 0
    results = {}
    for model in args.models:
        run = out / model
        if (run / "state").exists():
            import shutil

            shutil.rmtree(run)
        results[model] = run_model(model, world, out, args)
    text, checks = report(results)
    print(text)
    payload = {"args": vars(args), "world": world_info, "results": results, "checks": checks, "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    (out / "bench.json").write_text(json.dumps(payload, indent=2, default=str))
    (out / "bench.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
