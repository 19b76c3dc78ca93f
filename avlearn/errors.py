"""The error a user can fix, and how the console script reports it.

``avlearn CMD`` prints a :class:`UserError` as one line on stderr (``avlearn CMD: error: MESSAGE``)
and exits 2; the traceback appears only with ``avlearn -v``. The message names the fix
("... give --checkpoint", "... use a new --out or --overwrite"). Library functions raise their
own typed errors (``CheckpointError``, ``MediaError``, ``SourceError``, ...); each command
turns the ones that mean "the input is wrong" into a ``UserError`` with :func:`user_errors`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(ValueError):
    """A mistake the user can fix (a missing or wrong argument, file or value); the message says how."""


@contextmanager
def user_errors(*kinds: type[BaseException], hint: str = "") -> Iterator[None]:
    """Re-raise any exception of ``kinds`` as a :class:`UserError` (its message, plus ``hint``)."""
    try:
        yield
    except UserError:
        raise
    except kinds as exc:
        text = one_line(str(exc) or type(exc).__name__)
        if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
            text = one_line(exc.args[0])  # str(KeyError) adds quotes around the message
        raise UserError(f"{text}{'; ' + hint if hint else ''}") from exc


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces (a message for one stderr line)."""
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def require_path(path: str | os.PathLike | None, what: str, flag: str, *, kind: str = "any") -> Path:
    """``path`` as a Path when it exists (``kind``: "any" | "file" | "dir"); else a UserError naming ``flag``."""
    if path is None or str(path) == "":
        raise UserError(f"{flag} is required: {what}")
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag} {p}: no such file or folder ({what})")
    if kind == "file" and not p.is_file():
        raise UserError(f"{flag} {p}: not a file ({what})")
    if kind == "dir" and not p.is_dir():
        raise UserError(f"{flag} {p}: not a folder ({what})")
    return p


def count_reasons(errors_jsonl: str | os.PathLike) -> dict[str, int]:
    """{error type: files} of an ``errors.jsonl`` (one JSON record per failed file, with an "error" field)."""
    import json
    from collections import Counter

    p = Path(errors_jsonl)
    if not p.is_file():
        return {}
    kinds = Counter(json.loads(line).get("error", "unknown") for line in p.read_text().splitlines() if line.strip())
    return dict(kinds.most_common())


def work_summary(what: str, seen: int, ok: int, failed: int, reasons: dict[str, int], errors_file: str | os.PathLike | None = None) -> str:
    """'embed: 3 files seen, 0 decoded, 3 failed (NotMedia 2, CorruptMedia 1); see OUT/errors.jsonl' (one line)."""
    by = ", ".join(f"{k} {v}" for k, v in reasons.items())
    text = f"{what}: {seen} file(s) seen, {ok} decoded, {failed} failed" + (f" ({by})" if by else "")
    return text + (f"; see {errors_file}" if failed and errors_file else "")
