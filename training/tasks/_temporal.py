"""What the two temporal tasks (shuffle_learn, odd_one_out) share on the training side: their common
``--set`` options, the base Task (model build with trunk overrides, frame caches per split, the
classification loss).
The datasets and samplers themselves live in the library (``avlearn.pretext.temporal``)."""

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
    samples_per_epoch: int | None = opt(None, "training samples per epoch (default 200 per training video, at least 2000)")
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

    def split_videos(self, data: str, model: torch.nn.Module, split: str) -> list[VideoFrames]:
        """The frame caches of ``split`` of ``data`` (a val split defaults to the train data's, see ``split_source``)."""
        if split == "train":
            self._train_data = str(data)
        preprocessing = cast(dict[str, Any], model.preprocessing)  # set by every registry model
        return load_cached_videos(split_source(data, split, self._train_data), preprocessing, self.opts.cache(), what=self.name)

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return classification_step(model, batch)
