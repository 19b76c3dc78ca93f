"""Task "odd_one_out": Odd-One-Out networks (Fernando et al. CVPR 2017).

A raw source is decoded once into frame caches at the model's size (a frame shard dir is streamed
instead: ``training/tasks/_temporal.py``); questions are drawn from them by
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
from avlearn.data.frame_shards import is_frame_shard_dir
from avlearn.pretext.temporal import OddOneOutDataset, OddOneOutStream, fixed_questions, question_config, shard_refs
from training.tasks._temporal import TemporalOptions, TemporalTask, build_temporal_model
from training.tasks.base import register_task


@dataclass(frozen=True)
class OddOneOutOptions(TemporalOptions):
    """``--set`` options of odd_one_out."""

    gap: int = opt(6, "grid frames between consecutive frames of a subsequence")
    spread: int = opt(0, "> 0: all N subsequences start within this many grid frames of one anchor")
    encoder: Literal["stacked", "differences", "frames", "dynamic"] | None = opt(None, "subsequence encoder (a model hyper-parameter; default: the preset's)")


@register_task
class OddOneOutTask(TemporalTask):
    """Odd-One-Out: which of N subsequences of a video is not in temporal order?"""

    name = "odd_one_out"
    default_model = "odd_one_out"
    Options = OddOneOutOptions
    opts: OddOneOutOptions

    def build_model(self, preset: str) -> torch.nn.Module:
        return build_temporal_model(self.default_model, preset, {"pool": self.opts.pool, "encoder": self.opts.encoder})

    def questions(self, model: torch.nn.Module):
        return question_config(model, gap=self.opts.gap, motion_quantile=self.opts.motion_quantile, spread=self.opts.spread)

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        src = self.source(data, split)
        if is_frame_shard_dir(src):
            return self._stream(src, model, split=split, seed=seed, rank=rank, world_size=world_size)
        videos = self.split_videos(data, model, split)
        if split == "train":
            return OddOneOutDataset(
                videos, model.preprocessing, self.questions(model), seed=seed, length=self.opts.epoch_length(len(videos)),
                augment=self.opts.augment, fixed=False, jitter=self.opts.jitter,
            )  # fmt: skip
        return fixed_questions(videos, model.preprocessing, self.questions(model), seed=seed + 1, length=self.opts.val_samples)

    def _stream(self, src: str, model: torch.nn.Module, *, split: str, seed: int, rank: int, world_size: int) -> OddOneOutStream:
        """Questions streamed from a frame shard dir: ``samples_per_sequence`` per training sequence, a fixed set for validation."""
        cfg, cache = self.questions(model), self.opts.cache()
        refs = shard_refs(src, cache, lambda e: len(e) > e.steps(cfg.gap) * (cfg.frames_per_subsequence - 1), what=self.name)
        stream = self.stream_settings(split, len(refs), seed=seed, rank=rank, world_size=world_size)
        return OddOneOutStream(src, refs, model.preprocessing, cfg, cache, augment=split == "train" and self.opts.augment, jitter=self.opts.jitter, **stream)
