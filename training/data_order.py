"""Data order for the loop: per-epoch permutations dealt out to ranks, loaders, batches moved to the device.

For a map-style dataset the order of an epoch comes from ``(seed, epoch)`` alone, so a resumed
run skips exactly the batches it has seen; an iterable dataset is sharded by its task, and one with
cursors (:class:`DataCursor`) continues where the last consumed batch left it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from training import distributed as D
from training.config import TrainConfig, TrainingError


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one rank: a permutation from ``seed + epoch`` dealt out round-robin.

    Every rank gets ``len(self)`` indices (the permutation is cut to a multiple of the
    world size); ``skip`` drops the first indices (resume mid-epoch).
    """

    def __init__(self, n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1, shuffle: bool = True, skip: int = 0) -> None:
        self.n, self.seed, self.epoch, self.rank, self.world_size, self.shuffle, self.skip = n, seed, epoch, rank, world_size, shuffle, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = self.n // self.world_size
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.n // self.world_size - self.skip)


CURSOR_KEY = "_cursor"


class DataCursor:
    """Where this rank stands in the epoch of a resumable iterable dataset (resume without re-reading).

    A resumable dataset (an ``IterableDataset`` with ``load_state_dict``, e.g.
    :class:`avlearn.pretext.avc_datasets.StreamingAVC`) puts ``"_cursor"`` = (worker, *position)
    into every sample; :meth:`observe` pops it from each consumed batch and keeps the last one per
    data worker and which worker gave the batch. :meth:`apply` hands that to the dataset before the
    next pass, which then starts after the last consumed batch without decoding what came before.
    """

    def __init__(self, workers: int, saved: dict[str, Any] | None = None) -> None:
        self.workers = max(1, workers)  # 0 workers = one reader in the main process, as 1 worker
        self.cursors: dict[int, list[int]] = {}
        self.last_worker: int | None = None
        if saved and saved["last_worker"] is not None:
            if int(saved["workers"]) != self.workers:
                raise TrainingError(f"this streaming run was saved with --workers {saved['workers']}; resume with --workers {saved['workers']}")
            self.cursors = {int(k): list(v) for k, v in saved["cursors"].items()}
            self.last_worker = saved["last_worker"]

    def reset(self) -> None:
        """A new epoch starts from its beginning."""
        self.cursors, self.last_worker = {}, None

    def observe(self, batch: Any) -> Any:
        """Pop the cursor column of a consumed batch (a dict) and remember its last row."""
        cur = batch.pop(CURSOR_KEY, None) if isinstance(batch, dict) else None
        if cur is not None:
            row = [int(v) for v in cur[-1]]
            self.cursors[row[0]] = row[1:]
            self.last_worker = row[0]
        return batch

    def state(self) -> dict[str, Any]:
        return {"workers": self.workers, "cursors": dict(self.cursors), "last_worker": self.last_worker}

    def apply(self, ds: Dataset, epoch: int) -> bool:
        """Hand the cursors to ``ds`` (after ``set_epoch``); True when ``ds`` will continue from them."""
        if not resumable(ds) or self.last_worker is None:
            return False
        ds.load_state_dict({"epoch": epoch, **self.state()})  # type: ignore[attr-defined]
        return True


def resumable(ds: Dataset) -> bool:
    """An iterable dataset that continues from cursors (see :class:`DataCursor`)."""
    return isinstance(ds, IterableDataset) and hasattr(ds, "load_state_dict")


def loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    # A dedicated generator: creating a loader iterator must not touch the global torch RNG.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + rank)


def make_loader(ds: Dataset, cfg: TrainConfig, *, epoch: int, skip_batches: int, info: D.DistInfo, train: bool, pin: bool) -> DataLoader:
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    gen = loader_generator(cfg.seed, epoch, info.rank)
    if isinstance(ds, IterableDataset):
        return DataLoader(ds, batch_size=cfg.batch_size, num_workers=int(cfg.workers), pin_memory=pin, generator=gen, drop_last=train)
    sampler = EpochSampler(len(ds), seed=cfg.seed, epoch=epoch, rank=info.rank, world_size=info.world_size, shuffle=train, skip=skip_batches * cfg.batch_size)  # type: ignore[arg-type]
    return DataLoader(ds, batch_size=cfg.batch_size, num_workers=int(cfg.workers), pin_memory=pin, generator=gen, sampler=sampler, drop_last=train)


def batches_per_epoch(ds: Dataset, cfg: TrainConfig, info: D.DistInfo) -> int | None:
    try:
        n = len(ds)  # type: ignore[arg-type]
    except TypeError:
        return None
    if isinstance(ds, IterableDataset):  # already sharded by the task
        return n // cfg.batch_size
    return (n // info.world_size) // cfg.batch_size


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: dict[str, Any]) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.ndim > 0:
            return int(v.shape[0])
    return 0
