"""Task "odd_one_out": Odd-One-Out networks (Fernando et al. CVPR 2017).

Each split is decoded once into frame caches at the model's size; questions are drawn from them by
:class:`avlearn.pretext.odd_one_out.OddOneOutQuestions` (datasets: ``avlearn.pretext.temporal``).
N (``num_questions``) and K (``frames_per_subsequence``) come from the model; ``--set encoder=``
picks the subsequence encoder (stacked, differences, frames, dynamic; see avlearn/models/odd_one_out.py).
Evaluation: ``avlearn eval odd_one_out`` (``avlearn.eval.temporal``).

Samples: {"frames": (N, K, 3, H, W) float normalised, each subsequence in presentation order,
"label": position of the odd one}. Loss: N-way cross-entropy on ``logits`` (B, N).
Best checkpoint: highest validation accuracy (chance 1/N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import Dataset

from avlearn.config import opt
from avlearn.pretext.temporal import OddOneOutDataset, fixed_questions, load_cached_videos, question_config, split_source
from training.tasks._temporal import TemporalOptions, build_temporal_model, classification_step
from training.tasks.base import Task, register_task


@dataclass(frozen=True)
class OddOneOutOptions(TemporalOptions):
    """``--set`` options of odd_one_out."""

    gap: int = opt(6, "grid frames between consecutive frames of a subsequence")
    spread: int = opt(0, "> 0: all N subsequences start within this many grid frames of one anchor")
    encoder: Literal["stacked", "differences", "frames", "dynamic"] | None = opt(None, "subsequence encoder (a model hyper-parameter; default: the preset's)")


@register_task
class OddOneOutTask(Task):
    """Odd-One-Out: which of N subsequences of a video is not in temporal order?"""

    name = "odd_one_out"
    default_model = "odd_one_out"
    best_metric = ("acc", "max")
    Options = OddOneOutOptions

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self._train_data: str | None = None

    def build_model(self, preset: str) -> torch.nn.Module:
        return build_temporal_model(self.default_model, preset, {"pool": self.opts.pool, "encoder": self.opts.encoder})

    def questions(self, model: torch.nn.Module):
        return question_config(model, gap=self.opts.gap, motion_quantile=self.opts.motion_quantile, spread=self.opts.spread)

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        train = split == "train"
        if train:
            self._train_data = str(data)
        videos = load_cached_videos(split_source(data, split, self._train_data), model.preprocessing, self.opts.cache(), what=self.name)
        if train:
            return OddOneOutDataset(
                videos, model.preprocessing, self.questions(model), seed=seed, length=self.opts.epoch_length(len(videos)),
                augment=self.opts.augment, fixed=False, jitter=self.opts.jitter,
            )  # fmt: skip
        return fixed_questions(videos, model.preprocessing, self.questions(model), seed=seed + 1, length=self.opts.val_samples)

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return classification_step(model, batch)
