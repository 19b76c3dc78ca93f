"""What the two temporal tasks (shuffle_learn, odd_one_out) share on the training side: their common
``--set`` options, the base Task (model build with trunk overrides, frame caches per split or a
stream from frame shards, the classification loss).
The datasets and samplers themselves live in the library (``avlearn.pretext.temporal``).

Sources: a raw source (folder, manifest, world) is decoded once into frame caches held in RAM, and an
epoch is ``samples_per_epoch`` draws from uniformly chosen videos. A frame shard dir (``avlearn prepare
--kind frames``) is streamed shard by shard (``avlearn.pretext.frame_stream``): an epoch is
``samples_per_sequence`` samples of every training sequence, each rank reads its own shards once,
and at most ``max_shards`` shards are held per data reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch.nn import functional as F

from avlearn.config import opt
from avlearn.pretext.motion import DEFAULT_CUT_THRESHOLD, VideoFrames, require_cv2
from avlearn.pretext.temporal import FrameCacheConfig, default_samples_per_epoch, load_cached_videos, split_source
from training.tasks.base import Task


@dataclass(frozen=True)
class TemporalOptions:
    """Options shared by the temporal tasks."""

    stride: int = opt(1, "cache every stride-th grid frame (raw sources)")
    max_frames: int | None = opt(None, "cache at most this many frames per video (default: all)")
    max_videos: int | None = opt(None, "use at most this many videos per split (default: all)")
    cut_threshold: float = opt(DEFAULT_CUT_THRESHOLD, "grey-level frame difference treated as a shot cut")
    default_fps: float = opt(25.0, "frame rate assumed for shard clips whose file cannot be probed")
    motion_quantile: float = opt(0.5, "sample windows from the busiest (1 - q) of each video (0 = anywhere)")
    motion: Literal["diff", "flow"] = opt("diff", "motion measure of the window choice: frame differences, or Farnebäck optical flow (needs avlearn[flow])")
    augment: bool = opt(True, "one random crop (60-100% of the area) + flip, the same for every frame of a sample")
    jitter: float = opt(0.0, "> 0: each frame's crop also moves by up to this fraction of the frame (spatial jittering)")
    samples_per_epoch: int | None = opt(None, "raw sources: training samples per epoch (default 200 per training video, at least 2000)")
    samples_per_sequence: int = opt(200, "frame shards: training samples of each sequence per epoch (an epoch = one pass over every sequence)")
    max_shards: int = opt(2, "frame shards: shards held in memory at once per data reader")
    val_samples: int = opt(512, "fixed validation samples")
    pool: Literal["avg", "max"] | None = opt(None, "the trunk's grid pool (a model hyper-parameter; default: the preset's)")

    def __post_init__(self) -> None:
        if self.motion == "flow":
            require_cv2()  # a missing OpenCV is named now, not after decoding

    def cache(self) -> FrameCacheConfig:
        return FrameCacheConfig(self.stride, self.max_frames, self.max_videos, self.cut_threshold, self.default_fps, self.motion)

    def epoch_length(self, n_videos: int) -> int:
        return self.samples_per_epoch or default_samples_per_epoch(n_videos)


def build_temporal_model(name: str, preset: str, overrides: dict[str, object]) -> torch.nn.Module:
    """The registry model ``name`` for ``preset`` with the model hyper-parameters that were set (not None)."""
    from avlearn.models import create_model

    return create_model(name, preset, **{k: v for k, v in overrides.items() if v is not None})


def classification_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy on the model's ``logits`` (B, C) against ``label`` (B,), and the accuracy."""
    logits = model(batch["frames"])["logits"].float()
    label = batch["label"]
    return {"loss": F.cross_entropy(logits, label), "acc": (logits.argmax(dim=1) == label).float().mean().detach()}


class TemporalTask(Task):
    """Base of the temporal tasks: the best checkpoint by validation accuracy, cross-entropy on ``logits``,
    and each split decoded once into frame caches at the model's size (every rank keeps all videos: the
    loop's sampler deals the item indices out to ranks)."""

    best_metric = ("acc", "max")
    Options = TemporalOptions
    opts: TemporalOptions

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self._train_data: str | None = None

    def source(self, data: str, split: str) -> str:
        """The source of ``split`` of ``data`` (a val split defaults to the train data's, see ``split_source``)."""
        if split == "train":
            self._train_data = str(data)
        return split_source(data, split, self._train_data)

    def split_videos(self, data: str, model: torch.nn.Module, split: str) -> list[VideoFrames]:
        """The frame caches of ``split`` of ``data`` (a raw source or segment shards)."""
        preprocessing = cast(dict[str, Any], model.preprocessing)  # set by every registry model
        return load_cached_videos(self.source(data, split), preprocessing, self.opts.cache(), what=self.name)

    def stream_settings(self, split: str, n_sequences: int, *, seed: int, rank: int, world_size: int, multiple: int = 1) -> dict[str, Any]:
        """Stream arguments of ``split``: training ``samples_per_sequence`` per sequence; validation a fixed set of
        about ``val_samples`` (``multiple``: samples per draw, kept whole)."""
        if split == "train":
            per = self.opts.samples_per_sequence
            extra: dict[str, Any] = {"seed": seed, "shuffle": True, "fixed": False}
        else:
            per = -(-self.opts.val_samples // max(1, n_sequences))
            extra = {"seed": seed + 1, "shuffle": False, "fixed": True}
        per = multiple * -(-max(1, per) // multiple)
        return {"per_sequence": per, "rank": rank, "world_size": world_size, "max_shards": self.opts.max_shards, **extra}

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return classification_step(model, batch)
