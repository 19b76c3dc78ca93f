"""`avlearn demo`: the README's main job."""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    import json

    from demo.run import run_demo

    result = run_demo(args.out, minutes=args.minutes, shared=None if args.no_shared else "auto", seed=args.seed)
    print(json.dumps({"report": result["report"], "timings_sec": result["timings_sec"]}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end to end on embedded defaults: synth → train → embed → index → serve → query → report.html")
    p.add_argument("--out", default="runs/demo", help="output folder (report.html lands here)")
    p.add_argument("--minutes", type=float, default=15.0, help="time budget; training steps scale with it")
    p.add_argument("--no-shared", action="store_true", help="do not use ../shared/data even when present")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
