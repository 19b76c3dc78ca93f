"""What the two temporal tasks (shuffle_learn, odd_one_out) share on the training side: their common
``--set`` options, the model build with trunk overrides, and the classification loss.
The datasets and samplers themselves live in the library (``avlearn.pretext.temporal``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from avlearn.config import opt
from avlearn.pretext.motion import DEFAULT_CUT_THRESHOLD, require_cv2
from avlearn.pretext.temporal import FrameCacheConfig, default_samples_per_epoch


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
