"""What the training loop reports: per-step scalars (kept on the device, averaged over ranks at sync
points), validation over the val split, and the metrics log (``metrics.jsonl`` + TensorBoard, rank 0 only)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from training import distributed as D
from training.config import TrainConfig
from training.data_order import batch_size_of, make_loader, to_device

log = logging.getLogger(__name__)


def scalars(out: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not values:
        return values
    keys = sorted(values)
    t = D.all_reduce_mean(torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device))
    return dict(zip(keys, t.tolist()))


class StepScalars:
    """The task's scalar outputs of each optimizer step, kept on the device until :meth:`flush`.

    :meth:`add` takes one micro-batch's outputs without a host sync; :meth:`end_step` closes an
    optimizer step (the mean over its micro-batches) with its host-side values (lr, epoch, times);
    :meth:`flush` averages every pending step over ranks in one all-reduce and copies it to the host
    in one sync. All ranks must flush at the same steps (the all-reduce is collective).
    """

    def __init__(self) -> None:
        self.keys: list[str] | None = None
        self._micro: list[torch.Tensor] = []
        self._steps: list[tuple[int, dict[str, float], torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, outputs: dict[str, torch.Tensor]) -> None:
        """One micro-batch's scalar outputs (0-d or one-element tensors; the same keys every time)."""
        vals = {k: v.detach().float().reshape(()) for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
        if self.keys is None:
            self.keys = sorted(vals)
        elif sorted(vals) != self.keys:
            raise ValueError(f"the task's scalar outputs changed from {self.keys} to {sorted(vals)}")
        if self.keys:
            self._micro.append(torch.stack([vals[k] for k in self.keys]))

    def end_step(self, step: int, host: dict[str, float]) -> None:
        """Close optimizer step ``step``: the mean of its micro-batches, and ``host`` values logged beside it."""
        mean = torch.stack(self._micro).mean(0) if self._micro else torch.zeros(0)
        self._steps.append((step, host, mean))
        self._micro = []

    def flush(self, device: torch.device) -> list[tuple[int, dict[str, float]]]:
        """``(step, {scalar: mean over ranks, **host values})`` of every pending step, oldest first."""
        if not self._steps:
            return []
        values: list[list[float]] = [[] for _ in self._steps]
        if self.keys:
            stacked = torch.stack([t for _, _, t in self._steps]).to(device=device, dtype=torch.float64)  # (steps, keys)
            values = D.all_reduce_mean(stacked).tolist()  # the one host sync
        rows = [(step, {**dict(zip(self.keys or [], vals)), **host}) for (step, host, _), vals in zip(self._steps, values)]
        self._steps = []
        return rows


# ---------------------------------------------------------------- the loop


def val_dataset(task: Any, cfg: TrainConfig, model: torch.nn.Module, info: D.DistInfo) -> Dataset | None:
    try:
        ds = task.make_dataset(cfg.val_data or cfg.data, model, split="val", seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    except (FileNotFoundError, LookupError) as exc:
        if cfg.val_data:
            raise
        log.info("no validation split (%s): the final checkpoint is the one to use", exc)
        return None
    return ds


@torch.no_grad()
def validate(
    wrapped: torch.nn.Module,
    model: torch.nn.Module,
    ds: Dataset,
    cfg: TrainConfig,
    info: D.DistInfo,
    dev: torch.device,
    amp_dtype: torch.dtype | None,
    pin: bool,
) -> dict[str, float]:
    """Sample-weighted means of the task's scalars over (up to ``val_batches`` batches of) ``ds``."""
    model.eval()
    task_module = wrapped.module if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) else wrapped
    sums: dict[str, float] = {}
    count = 0
    loader = make_loader(ds, cfg, epoch=0, skip_batches=0, info=info, train=False, pin=pin)
    for i, batch in enumerate(loader):
        if cfg.val_batches is not None and i >= cfg.val_batches:
            break
        batch = to_device(batch, dev)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = task_module(batch)  # no DDP forward: ranks may see different batch counts
        n = batch_size_of(batch)
        for k, v in scalars(outputs).items():
            sums[k] = sums.get(k, 0.0) + v * n
        count += n
    model.train()
    local = {k: v / max(count, 1) for k, v in sums.items()}
    return mean_over_ranks(local, dev) if count else {}


class MetricsWriter:
    """metrics.jsonl + TensorBoard, on rank 0 only; on resume later lines are dropped."""

    def __init__(self, out_dir: Path, start_step: int, *, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "metrics.jsonl"
        if self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= start_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=start_step + 1 if start_step else None)

    def scalars(self, split: str, step: int, values: dict[str, float], *, tb: bool = True) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        if tb and self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
