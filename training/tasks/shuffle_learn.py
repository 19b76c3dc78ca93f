"""Task "shuffle_learn": temporal order verification (Misra et al. ECCV 2016).

A raw source is decoded once into frame caches at the model's size (a frame shard dir is streamed
instead: ``training/tasks/_temporal.py``); tuples are drawn from them by
:class:`avlearn.pretext.shuffle_learn.ShuffleLearnTuples` (datasets: ``avlearn.pretext.temporal``):
each draw of five frames a < b < c < d < e gives the positive (b, c, d) and the negatives (b, a, d)
and (b, e, d). ``train_tuples=balanced`` (default) trains on each draw's positive and one of its
negatives (half positives); ``train_tuples=all`` on all three (one positive in three, near the
paper's one in four). Validation is balanced.
Evaluation: ``avlearn eval shuffle_learn`` (``avlearn.eval.temporal``).

Samples: {"frames": (3, 3, H, W) float normalised, in presentation order, "label": 1 = in order}.
Loss: cross-entropy on the model's ``logits`` (B, 2). Best checkpoint: highest validation accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import Dataset

from avlearn.config import opt
from avlearn.data.frame_shards import is_frame_shard_dir
from avlearn.pretext.shuffle_learn import min_length
from avlearn.pretext.temporal import ShuffleLearnDataset, ShuffleLearnStream, fixed_order_tuples, shard_refs
from training.tasks._temporal import TemporalOptions, TemporalTask, build_temporal_model
from training.tasks.base import register_task


@dataclass(frozen=True)
class ShuffleLearnOptions(TemporalOptions):
    """``--set`` options of shuffle_learn."""

    tau_max: int = opt(60, "window (b..d) length in grid frames of the video")
    tau_min: int = opt(15, "negatives: the outside frame at least this many grid frames from the window")
    reverse: bool = opt(True, "show tuples backwards half the time (order, not direction, is verified)")
    middle_margin: float = opt(0.2, "c at least this fraction of the window from b and d")
    train_tuples: Literal["balanced", "all"] = opt(
        "balanced", "per five-frame draw: its positive and one negative (half positives), or all three tuples (one positive in three)"
    )

    def tuples(self):
        from avlearn.pretext.shuffle_learn import TupleConfig

        return TupleConfig(
            tau_max=self.tau_max, tau_min=self.tau_min, reverse=self.reverse, middle_margin=self.middle_margin, motion_quantile=self.motion_quantile,
        )  # fmt: skip


@register_task
class ShuffleLearnTask(TemporalTask):
    """Shuffle-and-Learn: is the middle frame of three between the other two in time?"""

    name = "shuffle_learn"
    default_model = "shuffle_learn"
    Options = ShuffleLearnOptions
    opts: ShuffleLearnOptions

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self.opts.tuples()  # validate the sampling settings now

    def build_model(self, preset: str) -> torch.nn.Module:
        return build_temporal_model(self.default_model, preset, {"pool": self.opts.pool})

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        src = self.source(data, split)
        if is_frame_shard_dir(src):
            return self._stream(src, model, split=split, seed=seed, rank=rank, world_size=world_size)
        videos = self.split_videos(data, model, split)
        if split == "train":
            per_draw = 2 if self.opts.train_tuples == "balanced" else 3
            return ShuffleLearnDataset(
                videos, model.preprocessing, self.opts.tuples(), seed=seed, length=per_draw * -(-self.opts.epoch_length(len(videos)) // per_draw),  # whole draws
                augment=self.opts.augment, fixed=False, jitter=self.opts.jitter, balanced=per_draw == 2,
            )  # fmt: skip
        return fixed_order_tuples(videos, model.preprocessing, self.opts.tuples(), seed=seed + 1, length=self.opts.val_samples)

    def _stream(self, src: str, model: torch.nn.Module, *, split: str, seed: int, rank: int, world_size: int) -> ShuffleLearnStream:
        """Tuples streamed from a frame shard dir: training draws per sequence in the ``train_tuples`` layout, validation balanced."""
        cfg, cache = self.opts.tuples(), self.opts.cache()
        refs = shard_refs(src, cache, lambda e: len(e) >= min_length(e, cfg), what=self.name)
        balanced = split != "train" or self.opts.train_tuples == "balanced"
        stream = self.stream_settings(split, len(refs), seed=seed, rank=rank, world_size=world_size, multiple=2 if balanced else 3)
        return ShuffleLearnStream(
            src, refs, model.preprocessing, cfg, cache, balanced=balanced, augment=split == "train" and self.opts.augment, jitter=self.opts.jitter, **stream
        )
