"""Training subcommands: ``avlearn train TASK`` and ``avlearn audit shortcuts`` (it trains).

``train`` is a thin shell over :func:`training.loop.train`; ``audit shortcuts`` over
:func:`training.audit.run_audit`. Under
``torchrun --nproc-per-node N -m avlearn.cli train ...`` (or
``python -m torch.distributed.run ...``) it runs DDP, one process per rank.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    """Add ``train`` to an argparse subparsers object."""
    p = sub.add_parser("train", help="train a self-supervised task (avc, shuffle_learn, odd_one_out, colorization)")
    p.add_argument("task", help="task name (avc | shuffle_learn | odd_one_out | colorization)")
    p.add_argument("--data", required=True, help="folder | manifest .csv/.jsonl | splits csv | prepared shard dir")
    p.add_argument("--preset", default="small", help="model preset (test_tiny | small | paper)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, state, TensorBoard)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, default=None)
    length.add_argument("--epochs", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.05, help="warm-up: a fraction of the steps, or a step count when >= 1")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--resume", action="store_true", help="continue the run saved in OUT/state")
    p.add_argument("--init", default=None, metavar="CHECKPOINT", help="start from this checkpoint's weights (a new run: fresh optimizer and LR schedule)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"), help="mixed precision (auto: bf16/fp16 on CUDA, off on CPU)")
    p.add_argument("--val-data", default=None, help="validation source (default: the 'val' split of --data, if any)")
    p.add_argument("--val-every", type=int, default=None, help="validate every N steps")
    p.add_argument("--ckpt-every", type=int, default=None, help="save OUT/last + OUT/state every N steps")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step with the state saved (continue with --resume)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE", help="task option (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)
    _register_audit(sub)


def _register_audit(sub) -> None:
    p = sub.add_parser("audit", help="audits of the training pipeline (shortcuts)")
    audits = p.add_subparsers(dest="audit", metavar="AUDIT", required=True)
    s = audits.add_parser(
        "shortcuts",
        help="train the AVC network on pairs without audio-visual correspondence; held-out accuracy above chance = a sampling shortcut",
        description="Trains the real AVC network for a short budget on pairs whose audio comes from other videos for both labels "
        "(only the sampling path differs) and scores held-out videos: accuracy with its Wilson 95% interval and a verdict. "
        "See docs/audit.md.",
    )
    s.add_argument("--data", required=True, help="folder | manifest .csv/.jsonl | a synthetic world (trains on splits/train.csv, holds out the rest)")
    length = s.add_mutually_exclusive_group()
    length.add_argument("--budget-sec", type=float, default=180.0, help="training time in all, shared by the folds' models (default 180)")
    length.add_argument("--steps", type=int, default=None, help="training steps per model (instead of --budget-sec)")
    s.add_argument("--preset", default="small", help="model preset (test_tiny | small | paper)")
    s.add_argument("--sampler", choices=("matched", "naive"), default="matched", help="matched: the project's sampler; naive: a second loader for label 1")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--folds", type=int, default=3, help="without splits/ in --data: held-out groups of clips, each scored by a model trained on the rest (default 3)"
    )
    s.add_argument("--heldout-pairs", type=int, default=2000, help="score at least this many held-out pairs (default 2000)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda")
    s.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE", help="avc task option (model, jitter, augment, decode_workers)")
    s.add_argument("--run-dir", default=None, help="keep the run and split manifests here (default: a temporary folder)")
    s.add_argument("--out", default=None, metavar="JSON", help="write the report here")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_audit_shortcuts)


def parse_options(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``; raises ValueError on an item without '='."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _train(args: argparse.Namespace) -> int:
    from training.config import TrainingError
    from training.loop import train

    try:
        options = parse_options(args.options)
        summary = train(
            args.task,
            args.data,
            args.out,
            preset=args.preset,
            steps=args.steps,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            workers=args.workers,
            resume=args.resume,
            seed=args.seed,
            device=args.device,
            options=options,
            val_data=args.val_data,
            val_every=args.val_every,
            ckpt_every=args.ckpt_every,
            stop_at=args.stop_at,
            progress=not args.no_progress,
            weight_decay=args.weight_decay,
            warmup=args.warmup,
            amp=args.amp,
            init=args.init,
        )
    except (TrainingError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"avlearn train: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("final") or summary.get("steps_this_run"):
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _audit_shortcuts(args: argparse.Namespace) -> int:
    from avlearn.atomic import atomic_write_json
    from avlearn.media import MediaError
    from training.audit import run_audit, verdict_line
    from training.config import TrainingError

    try:
        report = run_audit(
            args.data,
            sampler=args.sampler,
            preset=args.preset,
            steps=args.steps,
            budget_sec=args.budget_sec,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            folds=args.folds,
            heldout_pairs=args.heldout_pairs,
            device=args.device,
            options=parse_options(args.options),
            run_dir=args.run_dir,
            progress=not args.no_progress,
        )
    except (TrainingError, ValueError, KeyError, FileNotFoundError, MediaError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"avlearn audit shortcuts: error: {msg}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_json(args.out, report, indent=2)
    print(f"avlearn audit shortcuts: {verdict_line(report)}")
    return 0
