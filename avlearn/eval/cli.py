"""``avlearn eval NAME``: run an evaluation registered with ``@register_eval(NAME)`` (avlearn.eval.registry).

Its keyword parameters become options (``--random-weights`` for ``random_weights: bool = False``,
``--max-pairs N`` for ``max_pairs: int = ...``); the metrics dict is printed and, with
``--out FILE.json``, written as JSON.
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
    """Add ``eval`` to an argparse subparsers object."""
    p = sub.add_parser("eval", help="evaluate a checkpoint (avc | tracking | shuffle_learn | odd_one_out | ...)", add_help=False)
    p.add_argument("name", nargs="?", help="evaluation name")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of that evaluation (see avlearn eval NAME --help)")
    p.set_defaults(func=_eval)


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
    from avlearn.eval.registry import all_evals, get_eval

    if not args.name or args.name in ("-h", "--help"):
        print(f"usage: avlearn eval NAME [options]; NAME is one of {sorted(all_evals())}")
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
