"""The `avlearn` console script: one parser, subcommands registered through entry points.

Every package that adds commands declares ``register(subparsers)`` under the
``avlearn.commands`` entry-point group (pyproject.toml): the library's own commands
(synth, prepare, eval, track) and each app's (train; embed, index; serve; query, localize,
jobs; web; demo). ``register`` adds its subcommands with ``set_defaults(func=handler)``;
a handler takes the parsed ``argparse.Namespace`` and returns an exit code (or None for 0).
Handlers import heavy libraries lazily, so ``avlearn --help`` stays fast. The library never
imports an app: it only reads the entry points. A module that fails to load is an error
(:class:`CommandLoadError`), never a silently missing command.

One error path: every parser is a :class:`Parser` (no abbreviated flags; ``--help`` shows each
flag's description and default); a usage mistake or a :class:`avlearn.errors.UserError` raised by a
handler is one line on stderr naming the fix, exit code 2. Any other failure is one line too, exit
code 1; ``avlearn -v CMD`` (or ``CMD ... -v``) adds the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any, NoReturn

from avlearn.errors import UserError, one_line

# OpenMP threads that busy-wait collapse throughput when the cores are shared (measured: 2 torch
# threads on a loaded 2-core machine trained 8x slower than 1 thread; passive waiting recovers it).
# Must be set before torch loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

GROUP = "avlearn.commands"
USAGE_ERROR = 2  # exit code of a user mistake (argparse's too)
FAILURE = 1  # exit code of anything else that went wrong


class CommandLoadError(RuntimeError):
    """A registered command module could not be imported or has no usable ``register``."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; each flag's help ends with its default (unless None/False/empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or not action.option_strings or default is None or default is False or default is argparse.SUPPRESS or default in ([], ()):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class SubParsers(argparse._SubParsersAction):
    """Subcommands: ``help=`` doubles as the subcommand's description (shown by ``CMD --help``)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if "help" in kwargs and "description" not in kwargs:
            kwargs["description"] = kwargs["help"]
        return super().add_parser(name, **kwargs)


class Parser(argparse.ArgumentParser):
    """argparse without abbreviated flags (``--minute`` is not ``--minutes``), with defaults in ``--help``,
    and errors as one line: ``PROG: error: MESSAGE (see PROG --help)``. Subcommand parsers inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", SubParsers)
        self.set_defaults(_parser=self)  # the deepest parser that parsed: names the command in errors

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def command_entry_points() -> list[EntryPoint]:
    """The ``avlearn.commands`` entry points of the installed distribution, by name."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def build_parser(eps: list[EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The full parser. Raises CommandLoadError naming the entry point that failed to load."""
    parser = Parser(prog="avlearn", description="Self-supervised audio-visual learning from raw video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and the traceback of an error")
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
    for p in iter_parsers(parser):
        if p is not parser and not {"-v", "--verbose"} & set(p._option_string_actions):
            # `avlearn CMD ... -v` works too; SUPPRESS keeps a top-level -v from being reset by the subcommand's default
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging, and the traceback of an error")
    return parser


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it (each once)."""
    seen: set[int] = set()
    todo = [parser]
    while todo:
        p = todo.pop(0)
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """'unrecognized arguments: ...', with the closest known flag when one is near (``--minute`` → ``--minutes``)."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    known = [s for s in parser._option_string_actions if s.startswith("--")]
    for word in extra:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                return f"{message}; did you mean {close[0]}?"
    return message


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag is reported by the subcommand it was given to, not the top level."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = getattr(args, "_parser", parser)
        sub.error(_unrecognized(sub, extra))
    return args


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FAISS logs each SIMD variant it fails to import (ModuleNotFoundError) at INFO: noise unless debugging
    logging.getLogger("faiss.loader").setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (0 ok, 1 failure, 2 user mistake, others as the command says)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parse(parser, argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    configure_logging(bool(getattr(args, "verbose", False)))
    return dispatch(parser, args)


def dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the parsed command's handler: a UserError is one line and exit 2, any other error one line and exit 1
    (the traceback with -v); returns the exit code."""
    verbose = bool(getattr(args, "verbose", False))
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE_ERROR
    prog = getattr(args, "_parser", parser).prog
    try:
        code = args.func(args)
    except UserError as exc:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # a sub-parser's --help or error inside a handler (avlearn eval NAME ...)
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except Exception as exc:
        if verbose:
            traceback.print_exc()
            return FAILURE
        print(f"{prog}: error: {type(exc).__name__}: {one_line(str(exc))} (rerun as `avlearn -v ...` for the traceback)", file=sys.stderr)
        return FAILURE
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
