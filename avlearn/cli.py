"""The `avlearn` console script: one parser, subcommands registered by each package.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which
adds its subcommands with ``set_defaults(func=handler)``; a handler takes the
parsed ``argparse.Namespace`` and returns an exit code (or None for 0). Handlers
are thin shells over plain functions and import heavy libraries lazily, so
``avlearn --help`` stays fast. The core library never imports the apps at module
level; this dispatcher names them as strings.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# OpenMP threads that busy-wait collapse throughput when the cores are shared (measured: 2 torch
# threads on a loaded 2-core machine trained 8x slower than 1 thread; passive waiting recovers it).
# Must be set before torch loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMAND_MODULES: list[str] = [
    "avlearn.data.cli",  # synth, prepare
    "training.cli",  # train, eval, track
    "indexer.cli",  # embed, index
    "services.cli",  # serve, jobs worker
    "avlearn_client.cli",  # query, localize, jobs
    "training.tracking_cli",  # track
    "demo.cli",  # demo
    "avlearn_web.cli",  # web
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avlearn", description="Self-supervised audio-visual learning from raw video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that package is not part of this build yet
                continue
            raise
        module.register(sub)
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
