"""The Task interface: what the one training loop needs from a self-supervised method.

The loop (training/loop.py) never knows which pretext task it trains: it asks the
Task for a model, a dataset of samples, and a loss dict per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from avlearn.config import parse_options

_TASKS: dict[str, type[Task]] = {}


@dataclass(frozen=True)
class NoOptions:
    """A task without ``--set`` options."""


class Task:
    """One self-supervised method in the shared trainer.

    Subclasses set ``name``, ``default_model`` and ``Options`` (a frozen dataclass of the task's
    ``--set key=value`` settings, each field with a type, a default and a help text; see
    ``avlearn.config``) and implement the three methods. The options are parsed once, in
    ``__init__``: unknown keys and bad values raise ``avlearn.config.OptionError`` (a ValueError)
    naming the known ones; the typed values are ``self.opts``, the raw strings ``self.options``
    (stored in the run config).

    Optional hooks the loop uses when present:
        best_metric: (validation metric, "min" | "max") that picks ``OUT/best``; default ("loss", "min").
        find_unused_parameters: True when some steps leave model parameters without a gradient (DDP
            then traverses the graph every step); the model may set the same attribute. Every built-in
            model uses all its parameters in every step (checked under 2-process DDP), so none sets it.
        dataset.set_epoch(epoch): reseeds per-epoch sampling (called before each epoch).
        make_dataset(split="val") raising FileNotFoundError or LookupError: no usable
            validation split; the run trains without validation.
    """

    name: str = ""
    default_model: str = ""
    Options: type = NoOptions
    find_unused_parameters: bool = False

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.options = dict(options or {})
        self.opts: Any = parse_options(self.Options, self.options, what=f"{self.name} option")

    def build_model(self, preset: str) -> torch.nn.Module:
        """A fresh model from the registry (carries .preprocessing and .model_config)."""
        from avlearn.models import create_model

        return create_model(getattr(self.opts, "model", None) or self.default_model, preset)

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


def task_class(name: str) -> type[Task]:
    """The Task class registered as ``name``. Raises KeyError naming the known tasks."""
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(_TASKS)}")
    return _TASKS[name]


def get_task(name: str, options: dict[str, str] | None = None) -> Task:
    """A Task ``name`` with its ``--set`` options parsed."""
    return task_class(name)(options)


def list_tasks() -> list[str]:
    return sorted(_TASKS)
