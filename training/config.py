"""The resolved settings of one training run, and the error a run that cannot go on raises."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from torch.utils.data import Dataset, IterableDataset

MAX_AUTO_WORKERS = 8


@dataclass
class TrainConfig:
    """The resolved settings of one run (stored in every checkpoint's config.json under "run")."""

    task: str
    data: str
    out: str
    preset: str = "small"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps (or a step count when >= 1)
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 1.0
    workers: int | str = "auto"  # DataLoader workers: a count, or "auto" (see resolve_workers)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto | bf16 | fp16 | off
    options: dict[str, str] = field(default_factory=dict)
    val_data: str | None = None
    val_every: int | None = None
    val_batches: int | None = 50
    ckpt_every: int | None = None
    log_every: int = 10  # sync metrics to the host (loss finiteness check, metrics.jsonl, TensorBoard) every N steps
    accum_steps: int = 1  # micro-batches per optimizer step: effective batch = accum_steps x batch_size per process
    channels_last: str = "auto"  # auto | on | off: NHWC weights and 4-D inputs (auto: on for conv models on CUDA)
    compile: bool = False  # torch.compile the model
    init: str | None = None  # start from this checkpoint's weights (fresh optimizer and schedule)


class TrainingError(RuntimeError):
    """A run cannot start or continue (bad settings, empty data, incompatible state)."""


def parse_workers(value: int | str) -> int | str:
    """``"auto"`` or a count >= 0 (an int or a string of digits).

    Raises:
        TrainingError: anything else.
    """
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise TrainingError(f"--workers must be auto or a count >= 0, got {value!r}")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_workers(cpus: int, local_processes: int = 1, cap: int | None = None) -> int:
    """Data workers for one training process: ``min(8, cores per process - 1)`` (one core stays with
    the training step), at most ``cap`` (e.g. the batches of an epoch), at least 0."""
    n = min(MAX_AUTO_WORKERS, cpus // max(1, local_processes) - 1)
    if cap is not None:
        n = min(n, cap)
    return max(0, n)


def resolve_workers(requested: int | str, ds: Dataset, batch_size: int, local_processes: int = 1) -> int:
    """The DataLoader worker count for ``ds``: ``requested`` as a count, or ``"auto"`` (:func:`auto_workers`).

    An iterable dataset gets workers only if it declares ``shards_by_worker = True`` (each worker reads
    its own part); any other would repeat its data in every worker: auto gives it 0. Auto is capped by
    the dataset: the batches of an epoch (map-style) and ``ds.max_workers`` where the dataset has one.

    Raises:
        TrainingError: a bad count, or a count > 0 for an iterable dataset that does not shard by worker.
    """
    requested = parse_workers(requested)
    iterable = isinstance(ds, IterableDataset)
    shards = bool(getattr(ds, "shards_by_worker", False))
    if isinstance(requested, int):
        if iterable and not shards and requested > 0:
            raise TrainingError(
                f"--workers {requested}: this streaming dataset ({type(ds).__name__}) does not split its data between "
                "loader workers, each would repeat it; use --workers 0 (or auto)"
            )
        return int(requested)
    if iterable and not shards:
        return 0
    cap = getattr(ds, "max_workers", None)
    if not iterable:
        batches = len(ds) // max(1, batch_size)  # type: ignore[arg-type]
        cap = batches if cap is None else min(cap, batches)
    return auto_workers(available_cpus(), local_processes, cap)
