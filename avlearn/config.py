"""Typed option sets: a frozen dataclass per option set, parsed once from ``key=value`` strings.

Task options (``avlearn train TASK --set key=value``) and other string-keyed settings are
dataclasses whose fields carry their type, default and a one-line help text
(``field(default=..., metadata={"help": "..."})``). :func:`parse_options` validates the keys
against the fields (an unknown key is an error naming the known ones) and converts each value to
its field's type once; :func:`describe_options` lists them for ``--help``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar

T = TypeVar("T")

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class OptionError(ValueError):
    """An unknown option or a value of the wrong type; the message names the fix."""


def parse_bool(value: str | bool) -> bool:
    """1/0, true/false, yes/no, on/off (case-insensitive)."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _convert(value: Any, tp: Any) -> Any:
    """``value`` (usually a string) as type ``tp`` (bool, int, float, str, Literal[...], X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        if len(args) == 1:
            return _convert(value, args[0])
        for a in args:
            try:
                return _convert(value, a)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{value!r} is none of {args}")
    if origin is Literal:
        choices = typing.get_args(tp)
        v = str(value).strip().lower() if isinstance(value, str) else value
        if v not in choices:
            raise ValueError(f"{value!r} is not one of {list(choices)}")
        return v
    if tp is bool:
        return parse_bool(value)
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        f = float(value)
        if f != int(f):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        return float(value)
    if tp is str:
        return str(value)
    raise TypeError(f"unsupported option type {tp!r}")


def parse_options(cls: type[T], raw: dict[str, Any] | None, *, what: str = "option") -> T:
    """An instance of the dataclass ``cls`` from ``raw`` ({name: value}); missing keys take defaults.

    Raises:
        OptionError: an unknown name (the message lists the known ones) or a bad value.
    """
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw or {}) - set(known))
    if unknown:
        raise OptionError(f"unknown {what}(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in (raw or {}).items():
        try:
            values[name] = _convert(value, hints[name])
        except (TypeError, ValueError) as exc:
            raise OptionError(f"{what} {name}={value!r}: {exc}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{what}s: {exc}") from None


def option_strings(opts: Any) -> dict[str, str]:
    """The options that differ from their defaults, as ``key=value`` strings (for run configs)."""
    out = {}
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if value != default:
            out[f.name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def describe_options(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) of every field, for ``--help``."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) is Literal:
            type_name = "|".join(str(c) for c in typing.get_args(tp))
        else:
            type_name = getattr(tp, "__name__", str(tp)).replace("typing.", "")
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        rows.append((f.name, type_name, str(default).lower() if isinstance(default, bool) else str(default), str(f.metadata.get("help", ""))))
    return rows


def opt(default: Any, help: str) -> Any:  # noqa: A002 - the field's help text
    """A dataclass field with a default and a help text."""
    return dataclasses.field(default=default, metadata={"help": help})
