"""Typed option sets: a frozen dataclass per option set, parsed once from ``key=value`` strings.

Task options (``avlearn train TASK --set key=value``) and other string-keyed settings are
dataclasses whose fields carry their type, default and a one-line help text
(``field(default=..., metadata={"help": "..."})``). :func:`parse_options` validates the keys
against the fields (an unknown key is an error naming the known ones) and converts each value to
its field's type once; :func:`describe_options` lists them for ``--help``.

Model hyper-parameters follow the same rule: each model family has a frozen config dataclass
and named presets of it; :func:`resolve_preset` applies overrides (from a checkpoint's JSON or
a task's options) to a preset, validated against the fields; :func:`config_to_json` writes it back.
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
    """``value`` (a string, or a JSON value) as type ``tp``: bool, int, float, str, Literal[...], X | None,
    tuple[X, ...] / tuple[X, Y] (from a list, a tuple or "a,b"), or a dataclass with ``from_dict`` (from a dict)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        parts = typing.get_args(tp)
        items: list[Any] = [v for v in str(value).split(",") if v.strip()] if isinstance(value, str) else list(value)
        if len(parts) == 2 and parts[1] is Ellipsis:
            return tuple(_convert(v, parts[0]) for v in items)
        if len(items) != len(parts):
            raise ValueError(f"expected {len(parts)} values, got {value!r}")
        return tuple(_convert(v, a) for v, a in zip(items, parts))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict) and hasattr(tp, "from_dict"):
            return tp.from_dict(value)
        raise ValueError(f"expected a {tp.__name__} or its dict form, got {value!r}")
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


def parse_options(cls: type[T], raw: dict[str, Any] | None, *, what: str = "option", base: T | None = None) -> T:
    """An instance of the dataclass ``cls`` from ``raw`` ({name: value}); missing keys take their
    defaults, or ``base``'s values when given.

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
        return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{what}s: {exc}") from None


def resolve_preset(presets: dict[str, T], preset: str, overrides: dict[str, Any] | None, *, what: str = "model") -> T:
    """The config of ``preset`` with ``overrides`` applied, each validated against the config's fields.

    Raises:
        KeyError: an unknown preset (the message lists the known ones).
        OptionError: an unknown override key or a value of the wrong type.
    """
    if preset not in presets:
        raise KeyError(f"unknown {what} preset {preset!r}; known: {sorted(presets)}")
    base = presets[preset]
    return parse_options(type(base), overrides, what=f"{what} hyper-parameter", base=base)


def config_to_json(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict: tuples as lists, nested configs through their ``to_dict``."""

    def value(v: Any) -> Any:
        if hasattr(v, "to_dict"):
            return v.to_dict()
        if isinstance(v, (tuple, list)):
            return [value(x) for x in v]
        return v

    return {f.name: value(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def option_strings(opts: Any) -> dict[str, str]:
    """The options that differ from their defaults, as ``key=value`` strings (for run configs)."""
    out = {}
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        if value != default:
            out[f.name] = str(value).lower() if isinstance(value, bool) else ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
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
