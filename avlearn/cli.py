"""The `avlearn` console script: one parser, subcommands registered through entry points.

Every package that adds commands declares ``register(subparsers)`` under the
``avlearn.commands`` entry-point group (pyproject.toml): the library's own commands
(synth, prepare, eval, track) and each app's (train; embed, index; serve; query, localize,
jobs; web; demo). ``register`` adds its subcommands with ``set_defaults(func=handler)``;
a handler takes the parsed ``argparse.Namespace`` and returns an exit code (or None for 0).
Handlers import heavy libraries lazily, so ``avlearn --help`` stays fast. The library never
imports an app: it only reads the entry points. A module that fails to load is an error
(:class:`CommandLoadError`), never a silently missing command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import EntryPoint, entry_points

# OpenMP threads that busy-wait collapse throughput when the cores are shared (measured: 2 torch
# threads on a loaded 2-core machine trained 8x slower than 1 thread; passive waiting recovers it).
# Must be set before torch loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

GROUP = "avlearn.commands"


class CommandLoadError(RuntimeError):
    """A registered command module could not be imported or has no usable ``register``."""


def command_entry_points() -> list[EntryPoint]:
    """The ``avlearn.commands`` entry points of the installed distribution, by name."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def build_parser(eps: list[EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The full parser. Raises CommandLoadError naming the entry point that failed to load."""
    parser = argparse.ArgumentParser(prog="avlearn", description="Self-supervised audio-visual learning from raw video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    eps = command_entry_points() if eps is None else eps
    if not eps:
        raise CommandLoadError(f"no {GROUP!r} entry points: avlearn is not installed (run `pip install -e .`)")
    for ep in eps:
        try:
            register = ep.load()
        except Exception as exc:
            raise CommandLoadError(f"command module {ep.value!r} (entry point {ep.name!r}) failed to load: {type(exc).__name__}: {exc}") from exc
        if not callable(register):
            raise CommandLoadError(f"entry point {ep.name!r} ({ep.value}) is not a register(subparsers) function")
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code = args.func(args)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
