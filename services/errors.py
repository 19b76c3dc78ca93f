"""Query errors (each maps to one gRPC status in services.servicer) and the ``check`` hook.

A query calls ``check(stage)`` between its stages; the servicer's check raises
:class:`Abandoned` when the client has gone or its deadline has passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Check = Callable[[str], None]


class QueryError(Exception):
    """Base of engine errors; each maps to one gRPC status (services.servicer)."""


class InvalidQuery(QueryError, ValueError):
    """The request is malformed or over a limit (INVALID_ARGUMENT)."""


class UnknownSegment(QueryError, KeyError):
    """A segment id is not in the loaded bundle (NOT_FOUND)."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else "unknown segment"


class NotReady(QueryError):
    """The server cannot answer this yet: no bundle, no localizer, source media absent (FAILED_PRECONDITION)."""


class Abandoned(QueryError):
    """The client went away or its deadline passed; the query stopped at ``stage``."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"stopped before {stage}: {reason}")


def no_check(stage: str) -> None:
    """The ``check`` of a query nobody can abandon."""
    return None


MAX_MESSAGE_CHARS = 512  # error replies travel in a header (grpc-message); clients cap headers at 8 KiB by default
_OBJECT_REPR = re.compile(r"<([A-Za-z_][\w.]*) object at 0x[0-9a-fA-F]+>")


def short(text: object, limit: int = 64) -> str:
    """``text`` as given when at most ``limit`` characters, else its start and its length (ids in messages)."""
    s = str(text)
    return s if len(s) <= limit else f"{s[:limit]}… ({len(s)} characters)"


def user_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error message fit for a reply: no Python object reprs (``<_io.BytesIO object at 0x…>`` →
    "(the data sent)"), one line, at most ``limit`` characters."""
    s = _OBJECT_REPR.sub("(the data sent)", str(text))
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
