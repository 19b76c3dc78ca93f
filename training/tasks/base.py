"""The Task interface: what the one training loop needs from a self-supervised method.

The loop (training/loop.py) never knows which pretext task it trains: it asks the
Task for a model, a dataset of samples, and a loss dict per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_TASKS: dict[str, type[Task]] = {}

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def option_flag(value: str | bool | None, default: bool) -> bool:
    """A true/false ``--set`` option value (1/0, true/false, yes/no, on/off); None → ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


class Task:
    """One self-supervised method in the shared trainer.

    Subclasses set ``name`` and ``default_model`` and implement the three methods.
    ``options`` are task-specific settings from ``--set key=value`` (strings),
    parsed by the task itself; they are stored in the run config.

    Optional hooks the loop uses when present:
        best_metric: (validation metric, "min" | "max") that picks ``OUT/best``; default ("loss", "min").
        dataset.set_epoch(epoch): reseeds per-epoch sampling (called before each epoch).
        make_dataset(split="val") raising FileNotFoundError or LookupError: no usable
            validation split; the run trains without validation.
    """

    name: str = ""
    default_model: str = ""

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.options = dict(options or {})

    def build_model(self, preset: str) -> torch.nn.Module:
        """A fresh model from the registry (carries .preprocessing and .model_config)."""
        from avlearn.models import create_model

        return create_model(self.options.get("model", self.default_model), preset)

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> torch.utils.data.Dataset:
        """Samples (dicts of tensors) for ``split`` ("train" | "val"), sharded by (rank, world_size).

        May be map-style or iterable; the loop wraps it in a DataLoader.
        """
        raise NotImplementedError

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Forward + loss for one batch: must return "loss"; may return scalar metrics ("acc", ...)."""
        raise NotImplementedError


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a Task available to `avlearn train NAME`."""
    if not cls.name or cls.name in _TASKS:
        raise ValueError(f"task name {cls.name!r} missing or registered twice")
    _TASKS[cls.name] = cls
    return cls


def get_task(name: str, options: dict[str, str] | None = None) -> Task:
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(_TASKS)}")
    return _TASKS[name](options)


def list_tasks() -> list[str]:
    return sorted(_TASKS)


_EVALS: dict[str, Callable[..., dict[str, Any]]] = {}


def register_eval(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register ``fn(**kwargs) -> metrics dict`` for `avlearn eval NAME`."""

    def deco(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        _EVALS[name] = fn
        return fn

    return deco


def get_eval(name: str) -> Callable[..., dict[str, Any]]:
    if name not in _EVALS:
        raise KeyError(f"unknown evaluation {name!r}; known: {sorted(_EVALS)}")
    return _EVALS[name]
