"""A tiny regression Task for testing the loop alone (no media, no real model).

Randomness on purpose: augmentation noise from the global numpy RNG and dropout from
torch's, so an exact resume must restore both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avlearn.config import opt
from training.tasks.base import _TASKS, Task, register_task


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int, noise: float = 0.01, nan_sample: int = -1) -> None:
        g = np.random.default_rng(seed)
        self.noise = noise
        self.x = g.normal(size=(n, 8)).astype(np.float32)
        self.y = (self.x @ np.linspace(-1, 1, 8).astype(np.float32))[:, None]
        if nan_sample >= 0:
            self.y[nan_sample] = np.nan

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        noise = np.random.normal(scale=self.noise, size=8).astype(np.float32) if self.noise else 0.0  # global RNG
        return {"x": torch.from_numpy(self.x[i] + noise), "y": torch.from_numpy(self.y[i])}


class ToyModel(torch.nn.Module):
    def __init__(self, dropout: float = 0.1, unused: bool = False) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(16, 1))
        if unused:
            self.spare = torch.nn.Linear(8, 1)  # never used by forward: DDP needs find_unused_parameters
        self.model_config = {"name": "toy", "preset": "toy"}
        self.preprocessing = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class ToyOptions:
    dropout: float = opt(0.1, "dropout rate of the hidden layer")
    noise: float = opt(0.01, "augmentation noise (std) drawn from the global numpy RNG")
    n: int = opt(20, "training samples")
    val: str = opt("", "'none': no validation split")
    nan_sample: int = opt(-1, "training sample whose target is NaN (-1: none)")
    unused: bool = opt(False, "give the model a parameter its forward never uses (and set find_unused_parameters)")


class ToyTask(Task):
    name = "toy"
    default_model = "toy"
    Options = ToyOptions

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.find_unused_parameters = self.opts.unused

    def build_model(self, preset: str) -> torch.nn.Module:
        return ToyModel(self.opts.dropout, self.opts.unused)

    def make_dataset(self, data, model, *, split, seed, rank=0, world_size=1):
        if split == "val" and self.opts.val == "none":
            raise FileNotFoundError("no val split")
        noise = self.opts.noise
        if split == "train":
            return ToyData(self.opts.n, seed, noise, self.opts.nan_sample)
        return ToyData(8, seed + 1, noise)

    def compute(self, model, batch):
        pred = model(batch["x"])
        loss = torch.nn.functional.mse_loss(pred, batch["y"])
        return {"loss": loss, "mae": (pred - batch["y"]).abs().mean().detach()}


if "toy" not in _TASKS:
    register_task(ToyTask)
