"""`avlearn demo`: the README's main job."""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    import json

    from demo.run import run_demo

    if args.minutes <= 0:
        from avlearn.errors import UserError

        raise UserError(f"--minutes must be > 0, got {args.minutes:g}")
    result = run_demo(args.out, minutes=args.minutes, shared=None if args.no_shared else "auto", seed=args.seed, overwrite=args.overwrite)
    print(json.dumps({"report": result["report"], "timings_sec": result["timings_sec"], "reused": result["reused"]}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end to end on embedded defaults: synth → train → embed → index → serve → query → report.html")
    p.add_argument("--out", default="runs/demo", help="output folder (report.html lands here); rerun with the same settings to reuse its finished stages")
    p.add_argument("--minutes", type=float, default=15.0, help="time budget on 2 CPU cores; training steps and world size scale with it")
    p.add_argument("--no-shared", action="store_true", help="do not use ../shared/data even when present")
    p.add_argument("--seed", type=int, default=0, help="random seed (world, weights, query picks)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds a demo run with other settings (a new world goes beside the old one; a running server keeps its files)",
    )
    p.set_defaults(func=_demo)
