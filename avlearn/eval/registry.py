"""The evaluations behind ``avlearn eval NAME``: ``@register_eval(NAME)`` on ``fn(**options) -> metrics dict``.

An evaluation's keyword parameters become its command-line options (``avlearn/eval/cli.py``);
its docstring's first line is its help. Every evaluation module is imported by ``all_evals()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

EvalFn = Callable[..., dict[str, Any]]
_EVALS: dict[str, EvalFn] = {}
EVAL_MODULES = ("avlearn.eval.avc", "avlearn.eval.temporal", "avlearn.eval.tracking")


def register_eval(name: str) -> Callable[[EvalFn], EvalFn]:
    """Register ``fn(**kwargs) -> metrics dict`` for `avlearn eval NAME`."""

    def deco(fn: EvalFn) -> EvalFn:
        if name in _EVALS and _EVALS[name] is not fn:
            raise ValueError(f"evaluation {name!r} registered twice")
        _EVALS[name] = fn
        return fn

    return deco


def all_evals() -> dict[str, EvalFn]:
    """Every registered evaluation (importing the evaluation modules first)."""
    for module in EVAL_MODULES:
        importlib.import_module(module)
    return dict(_EVALS)


def get_eval(name: str) -> EvalFn:
    """The evaluation ``name``. Raises KeyError naming the known ones."""
    evals = all_evals()
    if name not in evals:
        raise KeyError(f"unknown evaluation {name!r}; known: {sorted(evals)}")
    return evals[name]
