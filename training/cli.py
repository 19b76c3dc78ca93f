"""Training subcommands: ``avlearn train TASK`` and ``avlearn eval NAME``.

``train`` is a thin shell over :func:`training.loop.train`; under
``torchrun --nproc-per-node N -m avlearn.cli train ...`` (or
``python -m torch.distributed.run ...``) it runs DDP, one process per rank.

``eval NAME`` calls the evaluation registered with ``@register_eval(NAME)``
(see training/tasks/): its keyword parameters become options (``--random-weights``
for ``random_weights: bool = False``, ``--max-pairs N`` for ``max_pairs: int = ...``);
the metrics dict is printed and, with ``--out FILE.json``, written as JSON.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(sub) -> None:
    """Add ``train`` and ``eval`` to an argparse subparsers object."""
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

    p = sub.add_parser("eval", help="evaluate a checkpoint (avc | tracking | shuffle_learn | odd_one_out | ...)", add_help=False)
    p.add_argument("name", nargs="?", help="evaluation name")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of that evaluation (see avlearn eval NAME --help)")
    p.set_defaults(func=_eval)


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
    from training.loop import TrainingError, train

    try:
        options = parse_options(args.options)
        summary = train(
            args.task, args.data, args.out, preset=args.preset, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            workers=args.workers, resume=args.resume, seed=args.seed, device=args.device, options=options, val_data=args.val_data,
            val_every=args.val_every, ckpt_every=args.ckpt_every, stop_at=args.stop_at, progress=not args.no_progress,
            weight_decay=args.weight_decay, warmup=args.warmup, amp=args.amp, init=args.init,
        )
    except (TrainingError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"avlearn train: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("final") or summary.get("steps_this_run"):
        print(json.dumps(summary, indent=2, default=str))
    return 0


def eval_parser(name: str, fn: Callable[..., dict[str, Any]]) -> argparse.ArgumentParser:
    """An argparse parser built from ``fn``'s keyword parameters (``--out`` is added for the JSON)."""
    parser = argparse.ArgumentParser(prog=f"avlearn eval {name}", description=(inspect.getdoc(fn) or "").split("\n\n")[0])
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name == "out":
            continue
        flag = "--" + param.name.replace("_", "-")
        default = param.default
        if default is inspect.Parameter.empty:
            parser.add_argument(flag, dest=param.name, required=True)
        elif isinstance(default, bool):
            parser.add_argument(flag, dest=param.name, action="store_false" if default else "store_true")
        elif isinstance(default, (int, float)):
            parser.add_argument(flag, dest=param.name, type=type(default), default=default)
        elif isinstance(default, (list, tuple)):
            parser.add_argument(flag, dest=param.name, nargs="+", default=default)
        else:
            parser.add_argument(flag, dest=param.name, default=default)
    parser.add_argument("--out", dest="_out", default=None, metavar="FILE.json", help="write the metrics as JSON here")
    return parser


def _eval(args: argparse.Namespace) -> int:
    from training.tasks import get_eval
    from training.tasks.base import _EVALS

    if not args.name or args.name in ("-h", "--help"):
        print(f"usage: avlearn eval NAME [options]; NAME is one of {sorted(_EVALS)}")
        return 0 if args.name else 2
    try:
        fn = get_eval(args.name)
    except KeyError as exc:
        print(f"avlearn eval: error: {exc.args[0]}", file=sys.stderr)
        return 2
    ns = vars(eval_parser(args.name, fn).parse_args(args.rest))
    out = ns.pop("_out")
    if "out" in inspect.signature(fn).parameters:
        ns["out"] = out
    try:
        metrics = fn(**ns)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        print(f"avlearn eval {args.name}: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(metrics, indent=2, default=_json_default)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return 0


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
