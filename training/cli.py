"""Training subcommands: ``avlearn train TASK`` and ``avlearn audit shortcuts`` (it trains).

``train`` is a thin shell over :func:`training.loop.train`; ``audit shortcuts`` over
:func:`training.audit.run_audit`. Under
``torchrun --nproc-per-node N -m avlearn.cli train ...`` (or
``python -m torch.distributed.run ...``) it runs DDP, one process per rank.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    """Add ``train`` to an argparse subparsers object."""
    p = sub.add_parser(
        "train",
        help="train a self-supervised task (avc, shuffle_learn, odd_one_out, colorization)",
        epilog="`avlearn train TASK --help` lists that task's --set options with their types and defaults.",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_TaskHelp, help="show this help (after TASK: also the task's --set options) and exit")
    p.add_argument("task", metavar="TASK", help="task name: avc | shuffle_learn | odd_one_out | colorization")
    p.add_argument("--data", required=True, help="training source: folder | manifest .csv/.jsonl | splits csv | prepared shard dir")
    p.add_argument("--preset", default="small", help="model size preset: test_tiny | small | paper")
    p.add_argument("--out", required=True, help="run directory (checkpoints, state, metrics, TensorBoard); a new folder, or the run's own with --resume")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, default=None, help="run length in optimizer steps")
    length.add_argument("--epochs", type=float, default=None, help="run length in passes over the training data (a sized source)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per loader batch in each process (DDP: x processes per step)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--warmup", type=float, default=0.05, help="warm-up: a fraction of the steps, or a step count when >= 1")
    p.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="DataLoader worker processes: auto (min(8, cores per process - 1), capped by the data; 0 for a stream that does not split by worker) | N (0: load in the training process)",
    )
    p.add_argument(
        "--accum-steps",
        type=_positive_int,
        default=1,
        metavar="K",
        help="gradient accumulation: K batches per optimizer step (effective batch K x --batch-size)",
    )
    p.add_argument(
        "--log-every",
        type=_positive_int,
        default=10,
        metavar="N",
        help="sync metrics to the host every N steps (loss check, metrics.jsonl, TensorBoard); 1 = every step",
    )
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"), help="NHWC memory format for conv models (auto: on for CUDA, off on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (first steps are slower while it compiles)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in OUT/state")
    p.add_argument("--init", default=None, metavar="CHECKPOINT", help="start from this checkpoint's weights (a new run: fresh optimizer and LR schedule)")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, sampling, augmentation)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"), help="mixed precision (auto: bf16/fp16 on CUDA, off on CPU)")
    p.add_argument("--val-data", default=None, help="validation source (default: the 'val' split of --data, if any)")
    p.add_argument("--val-every", type=int, default=None, help="validate every N steps (default: 10 times per run, and at the end)")
    p.add_argument("--ckpt-every", type=int, default=None, help="save OUT/last + OUT/state every N steps (default: at each validation)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step with the state saved (continue with --resume)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE", help="a task option (repeatable; see TASK --help)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    length.add_argument("--budget-sec", type=float, default=180.0, help="training time in all, shared by the folds' models")
    length.add_argument("--steps", type=int, default=None, help="training steps per model (instead of --budget-sec)")
    s.add_argument("--preset", default="small", help="model preset (test_tiny | small | paper)")
    s.add_argument("--sampler", choices=("matched", "naive"), default="matched", help="matched: the project's sampler; naive: a second loader for label 1")
    s.add_argument("--batch-size", type=int, default=32, help="pairs per training step")
    s.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine schedule)")
    s.add_argument("--seed", type=int, default=0, help="seed of the folds, the sampler and the weights")
    s.add_argument("--folds", type=int, default=3, help="without splits/ in --data: held-out groups of clips, each scored by a model trained on the rest")
    s.add_argument("--heldout-pairs", type=int, default=2000, help="score at least this many held-out pairs")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda")
    s.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE", help="avc task option (model, jitter, augment, decode_workers)")
    s.add_argument("--run-dir", default=None, help="keep the run and split manifests here (default: a temporary folder)")
    s.add_argument("--out", default=None, metavar="JSON", help="write the report here")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=_audit_shortcuts)


class _TaskHelp(argparse.Action):
    """``--help``: the train flags, then the tasks (``train --help``) or one task's ``--set`` options (``train TASK --help``)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from avlearn.errors import UserError

        try:
            text = task_help(getattr(namespace, "task", None))
        except UserError as exc:
            parser.error(str(exc))
        parser.print_help()
        print(f"\n{text}")
        parser.exit()


def task_help(name: str | None) -> str:
    """The tasks and their one-line descriptions (``name`` None), or task ``name``'s ``--set`` options.

    Raises:
        UserError: ``name`` is not a task.
    """
    from avlearn.config import describe_options
    from training.tasks import list_tasks, task_class

    if name is None:
        lines = ["tasks (`avlearn train TASK --help` for a task's --set options):"]
        lines += [f"  {t:<14s} {_task_summary(task_class(t))}" for t in list_tasks()]
        return "\n".join(lines)
    cls = _task_class(name)
    rows = describe_options(cls.Options)
    lines = [f"task {name}: {_task_summary(cls)}", f"default model: {cls.default_model}" if cls.default_model else ""]
    if not rows:
        return "\n".join([*filter(None, lines), "  (no --set options)"])
    lines.append("--set options (KEY=VALUE, repeatable):")
    width = max(len(f"{n}={t}") for n, t, _, _ in rows)
    lines += [f"  {n + '=' + t:<{width}s}  {h} (default: {d})" for n, t, d, h in rows]
    return "\n".join(filter(None, lines))


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0]


def _task_summary(cls: type) -> str:
    """The first line of the task class's docstring, else of its module's."""
    import sys

    return _first_line(cls.__doc__) or _first_line(getattr(sys.modules.get(cls.__module__), "__doc__", None))


def _task_class(name: str):
    from avlearn.errors import UserError
    from training.tasks import list_tasks, task_class

    try:
        return task_class(name)
    except KeyError:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(list_tasks())} (see `avlearn train --help`)") from None


def _workers(value: str) -> int | str:
    """argparse type of --workers: ``auto`` or a count >= 0."""
    from training.config import TrainingError, parse_workers

    try:
        return parse_workers(value)
    except TrainingError:
        raise argparse.ArgumentTypeError(f"expected auto or a count >= 0, got {value!r}") from None


def _positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return int(value)


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
    from avlearn.checkpoint import CheckpointError
    from avlearn.config import OptionError
    from avlearn.data.sources import SourceError
    from avlearn.errors import UserError, user_errors
    from training.config import TrainingError
    from training.loop import train

    _task_class(args.task)  # an unknown task is the first thing to report, before the data or the run folder
    try:
        options = parse_options(args.options)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with (
        user_errors(TrainingError, SourceError, CheckpointError, FileNotFoundError, KeyError, ValueError),
        user_errors(OptionError, hint=f"see `avlearn train {args.task} --help`"),  # inner: an OptionError is a ValueError too
    ):
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
            accum_steps=args.accum_steps,
            log_every=args.log_every,
            channels_last=args.channels_last,
            compile=args.compile,
        )
    if summary.get("final") or summary.get("steps_this_run"):
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _audit_shortcuts(args: argparse.Namespace) -> int:
    from avlearn.atomic import atomic_write_json
    from avlearn.errors import user_errors
    from avlearn.media import MediaError
    from training.audit import run_audit, verdict_line
    from training.config import TrainingError

    with user_errors(TrainingError, ValueError, KeyError, FileNotFoundError, MediaError):
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
    if args.out:
        atomic_write_json(args.out, report, indent=2)
    print(f"avlearn audit shortcuts: {verdict_line(report)}")
    return 0
