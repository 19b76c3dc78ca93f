"""``avlearn eval NAME``: run an evaluation registered with ``@register_eval(NAME)`` (avlearn.eval.registry).

Its keyword parameters become options (``--random-weights`` for ``random_weights: bool = False``,
``--max-pairs N`` for ``max_pairs: int = ...``), each with the default from the signature and the help
from the docstring (a line ``name: text`` or ``` ``name``: text ```); the metrics dict is printed and,
with ``--out FILE.json``, written as JSON. ``avlearn eval --help`` lists the evaluations.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TYPES = (bool, int, float, str)
# Help for parameters most evaluations share; an evaluation's docstring line ``name: text`` wins.
COMMON_HELP = {
    "checkpoint": "checkpoint dir to evaluate (OUT/best of `avlearn train`)",
    "data": "source to evaluate: a world folder, a splits csv, a folder of videos or a manifest",
    "split": "the split of --data evaluated (the whole source when it has none)",
    "boxes": "boxes.json of the sounding objects (localization metrics; default: next to --data when present)",
    "labels": "labels source (labels.csv or a labelled source; default: --data's own)",
    "ontology": "category ontology JSON (label groups for retrieval relevance)",
    "localizer": "AVOL-Net checkpoint for the localization metrics",
    "random_weights": "also evaluate the same architecture with random weights (the baseline)",
    "max_segments": "evaluate at most this many segments (sampled with --seed)",
    "samples": "test questions asked",
    "seed": "random seed (sampling)",
    "device": "auto | cpu | cuda | cuda:N",
    "davis_root": "DAVIS-layout root (JPEGImages/, Annotations/, ImageSets/)",
    "sequences": "only these sequences (default: the val list)",
    "max_videos": "use at most this many videos, a seeded draw from the listing made before decoding (0: all)",
    "probe_max_clips": "at most this many clips of each side of the probe, a seeded draw made before decoding (0: all)",
    "segments_per_clip": "keep at most this many segments of each drawn clip (0: all)",
    "folds": "cross-validation folds of the probe",
    "no_probe": "skip the frozen-trunk linear probe",
}


def register(sub) -> None:
    """Add ``eval`` to an argparse subparsers object."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (avc | tracking | shuffle_learn | odd_one_out | ...)",
        usage="avlearn eval [-h] NAME [options of NAME]",
        epilog="`avlearn eval NAME --help` lists that evaluation's options with their defaults.",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_EvalHelp, help="list the evaluations and exit")
    p.add_argument("name", metavar="NAME", nargs="?", help="evaluation name")
    p.add_argument("rest", metavar="...", nargs=argparse.REMAINDER, help="options of that evaluation (see avlearn eval NAME --help)")
    p.set_defaults(func=_eval)


class _EvalHelp(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.print_help()
        print(f"\n{evals_help()}")
        parser.exit()


def evals_help() -> str:
    """Each registered evaluation with the first line of its docstring."""
    from avlearn.eval.registry import all_evals

    evals = all_evals()
    return "\n".join(["evaluations:", *(f"  {name:<14s} {_doc_lines(fn)[0] if _doc_lines(fn) else ''}" for name, fn in sorted(evals.items()))])


def _doc_lines(fn: Callable[..., Any]) -> list[str]:
    return (inspect.getdoc(fn) or "").splitlines()


def param_help(fn: Callable[..., Any]) -> dict[str, str]:
    """Per-parameter help from ``fn``'s docstring: lines ``name: text`` / ``` ``name``: text ``` (continuation lines joined)."""
    out: dict[str, str] = {}
    current = None
    names = set(inspect.signature(fn).parameters)
    for line in _doc_lines(fn):
        m = re.match(r"\s*(?:``)?([a-z_][a-z0-9_]*)(?:``)?\s*(?:\([^)]*\))?:\s*(.+)$", line)
        if m and m.group(1) in names:
            current = m.group(1)
            out[current] = m.group(2).strip().rstrip(";")
        elif current and line.startswith((" ", "\t")) and line.strip():
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def _param_type(annotation: Any, default: Any) -> type | None:
    """The scalar type a parameter takes from the command line (``str | None`` → str), or None for lists."""
    if isinstance(default, bool):
        return bool
    if isinstance(default, (list, tuple)):
        return None
    for tp in (annotation, *typing.get_args(annotation)):
        if tp in _TYPES:
            return tp
    return type(default) if isinstance(default, _TYPES) else str


def eval_parser(name: str, fn: Callable[..., dict[str, Any]]) -> argparse.ArgumentParser:
    """A parser built from ``fn``'s keyword parameters (``--out`` is added for the JSON)."""
    from avlearn.cli import Parser

    doc = _doc_lines(fn)
    parser = Parser(prog=f"avlearn eval {name}", description=doc[0] if doc else None)
    helps = param_help(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: fall back to the defaults' types
        hints = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name == "out":
            continue
        flag = "--" + param.name.replace("_", "-")
        default = param.default
        text = helps.get(param.name) or COMMON_HELP.get(param.name) or param.name.replace("_", " ")
        tp = _param_type(hints.get(param.name), None if default is inspect.Parameter.empty else default)
        if default is inspect.Parameter.empty:
            parser.add_argument(flag, dest=param.name, required=True, type=tp or str, help=text)
        elif tp is bool:
            parser.add_argument(flag, dest=param.name, action="store_false" if default else "store_true", help=text)
        elif tp is None:
            parser.add_argument(flag, dest=param.name, nargs="+", default=default, help=text)
        else:
            parser.add_argument(flag, dest=param.name, type=tp, default=default, help=text)
    parser.add_argument("--out", dest="_out", default=None, metavar="FILE.json", help="write the metrics as JSON here")
    return parser


def _eval(args: argparse.Namespace) -> int:
    from avlearn.checkpoint import CheckpointError
    from avlearn.data.davis import DavisLayoutError
    from avlearn.data.sources import SourceError
    from avlearn.errors import UserError, user_errors
    from avlearn.eval.registry import all_evals, get_eval
    from avlearn.media import MediaError

    if not args.name:
        raise UserError(f"name an evaluation: avlearn eval NAME ...; NAME is one of {', '.join(sorted(all_evals()))}")
    try:
        fn = get_eval(args.name)
    except KeyError as exc:
        raise UserError(f"{exc.args[0]} (see `avlearn eval --help`)") from None
    ns = vars(eval_parser(args.name, fn).parse_args(args.rest))
    ns.pop("_parser", None)
    out = ns.pop("_out")
    if "out" in inspect.signature(fn).parameters:
        ns["out"] = out
    with user_errors(ValueError, KeyError, FileNotFoundError, CheckpointError, SourceError, MediaError, DavisLayoutError):
        metrics = fn(**ns)
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
