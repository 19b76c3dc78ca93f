"""Tasks for the shared trainer: one module per method, each registering itself."""

import importlib

from training.tasks.base import Task, get_eval, get_task, list_tasks, register_eval, register_task

_TASK_MODULES = ["avc", "shuffle_learn", "odd_one_out", "colorization"]

for _name in _TASK_MODULES:
    try:
        importlib.import_module(f"training.tasks.{_name}")
    except ModuleNotFoundError as _exc:  # a method not built yet
        if _exc.name != f"training.tasks.{_name}":
            raise

__all__ = ["Task", "get_eval", "get_task", "list_tasks", "register_eval", "register_task"]
