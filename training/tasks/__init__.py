"""Tasks for the shared trainer: one module per method, each registering itself."""

from training.tasks import avc, colorization, odd_one_out, shuffle_learn  # noqa: F401  (each registers its task)
from training.tasks.base import Task, get_task, list_tasks, register_task, task_class

__all__ = ["Task", "get_task", "list_tasks", "register_task", "task_class"]
