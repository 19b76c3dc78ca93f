"""The per-frame CNN trunk shared by Shuffle-and-Learn and Odd-One-Out.

Both papers run one network per frame with shared weights (CaffeNet in the originals) and
fuse the per-frame features late. Here the trunk is a VGG-style conv tower (from
``_towers``), an adaptive average pool to a small spatial grid (which keeps *where* things
are, the cue that temporal order needs; a global pool would throw it away) and one fully
connected layer with ReLU, like CaffeNet's fc6::

    frame (B, 3, H, W) → ConvTower → adaptive avg pool (g × g) → flatten → fc → ReLU → (B, D)

Presets (``TRUNK_PRESETS``):
- ``test_tiny``: 32×32 frames, 8-16 channels, 2×2 grid, D = 32 (tests).
- ``small``: 64×64 frames, one conv per block, 32-64-128 channels, stride-2 first conv
  (64 → 32 → 16 → 8 px maps), 4×4 grid, D = 256: ~10 M multiply-adds per frame, CPU-friendly.
- ``paper``: 224×224 frames, two convs per block, 64-128-256-512 channels, stride-2 first
  conv, 6×6 grid (CaffeNet's pool5 size), D = 1024.

The frame embedding (``embed_image``) is the L2-normalised trunk output; it is what the
probe (``avlearn.eval.probe``) and ``avlearn.embed.Embedder`` use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from avlearn.config import config_to_json
from avlearn.media.features import SMALL_AUDIO
from avlearn.models._towers import IMAGE_MEAN, IMAGE_STD, ConvTower, init_weights

__all__ = ["TRUNK_PRESETS", "FrameTrunk", "TrunkConfig", "TrunkModel", "build_trunk", "frame_preprocessing", "init_weights"]


@dataclass(frozen=True)
class TrunkConfig:
    """Hyper-parameters of the per-frame trunk (the temporal models add their own head's)."""

    image_size_px: tuple[int, int]
    channels: tuple[int, ...]
    convs_per_block: int
    stem_stride: int
    grid: int
    feature_dim: int
    pool: Literal["avg", "max"]


TRUNK_PRESETS: dict[str, TrunkConfig] = {
    "test_tiny": TrunkConfig(image_size_px=(32, 32), channels=(8, 16), convs_per_block=1, stem_stride=1, grid=2, feature_dim=32, pool="avg"),
    "small": TrunkConfig(image_size_px=(64, 64), channels=(32, 64, 128), convs_per_block=1, stem_stride=2, grid=4, feature_dim=256, pool="avg"),
    "paper": TrunkConfig(image_size_px=(224, 224), channels=(64, 128, 256, 512), convs_per_block=2, stem_stride=2, grid=6, feature_dim=1024, pool="avg"),
}
POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


class FrameTrunk(nn.Module):
    """Frames (B, 3·in_frames, H, W) normalised → features (B, feature_dim) ≥ 0 (after ReLU).

    Args:
        channels: output channels of each conv block.
        convs_per_block: conv3×3-BN-ReLU layers per block.
        stem_stride: stride of the first conv.
        grid: side g of the adaptive average pool before the fc layer.
        feature_dim: D.
        in_frames: frames stacked on the channel axis (early fusion; 1 = a single frame).
        pool: "avg" or "max": the adaptive pool to the g×g grid (CaffeNet's pool5 is a max pool).
    """

    def __init__(
        self, channels: Sequence[int], *, convs_per_block: int, stem_stride: int, grid: int, feature_dim: int, in_frames: int = 1, pool: str = "avg"
    ) -> None:
        super().__init__()
        if grid < 1 or feature_dim < 1 or in_frames < 1:
            raise ValueError(f"grid, feature_dim and in_frames must be >= 1, got {grid}, {feature_dim}, {in_frames}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {sorted(POOLS)}, got {pool!r}")
        self.in_frames = int(in_frames)
        self.tower = ConvTower(3 * self.in_frames, channels, convs_per_block=convs_per_block, stem_stride=stem_stride)
        self.pool = POOLS[pool](grid)
        self.fc = nn.Linear(self.tower.out_channels * grid * grid, feature_dim)
        self.feature_dim = int(feature_dim)
        init_weights(self)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")  # fan-in: the fc has many inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(torch.flatten(self.pool(self.tower(x)), 1)))


def build_trunk(cfg: TrunkConfig, in_frames: int = 1) -> FrameTrunk:
    return FrameTrunk(
        cfg.channels, convs_per_block=cfg.convs_per_block, stem_stride=cfg.stem_stride, grid=cfg.grid,
        feature_dim=cfg.feature_dim, in_frames=in_frames, pool=cfg.pool,
    )  # fmt: skip


def frame_preprocessing(image_size_px: Sequence[int]) -> dict[str, Any]:
    """``model.preprocessing`` of a frame-only model.

    ``avlearn.embed.preprocess.Preprocessor.from_config`` requires an audio entry, so one is
    stored (SMALL_AUDIO) although these models take no audio; ``"modalities": ["image"]`` says so.
    """
    return {
        "image_size_px": [int(image_size_px[0]), int(image_size_px[1])],
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "audio": SMALL_AUDIO.to_dict(),
        "sample_rate_hz": SMALL_AUDIO.sample_rate_hz,
        "segment_sec": SMALL_AUDIO.duration_sec,
        "modalities": ["image"],
    }


class TrunkModel(nn.Module):
    """Base of the temporal models: a shared :class:`FrameTrunk` and the frame-embedding API.

    Attributes:
        trunk: the per-frame network.
        embed_dim: D of :meth:`embed_image`.
        preprocessing, model_config: JSON-ready dicts (see ``avlearn.models._registry``).
    """

    def __init__(self, name: str, preset: str, cfg: TrunkConfig, *, in_frames: int = 1) -> None:
        super().__init__()
        self.trunk = build_trunk(cfg, in_frames)
        self.embed_dim = self.trunk.feature_dim
        self.preprocessing = frame_preprocessing(cfg.image_size_px)
        self.model_config = {"name": name, "preset": preset, **config_to_json(cfg)}

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (..., 3, H, W) → trunk features (..., D), any leading dims."""
        lead = x.shape[:-3]
        f = self.trunk(x.reshape(-1, *x.shape[-3:]))
        return f.reshape(*lead, f.shape[-1])

    @property
    def stack_frames(self) -> int:
        """K frames the trunk takes at once: > 1 for an early-fusion trunk (stacked frames), else 1."""
        return self.trunk.in_frames

    @property
    def input_frames(self) -> int:
        """Frames of one trunk input as the model was trained: K for stacks (or dynamic images of K frames), else 1."""
        return self.stack_frames

    def _trunk_input(self, x: torch.Tensor) -> torch.Tensor:
        """Frames → the trunk's input (B, 3·K, H, W).

        ``x``: (B, 3, H, W) one frame each — for an early-fusion trunk (K = ``stack_frames`` > 1)
        the frame shown K times (a still) — or (B, K, 3, H, W), K frames in temporal order (a stack).
        """
        k = self.trunk.in_frames
        if x.dim() == 5:
            if x.shape[1] != k:
                raise ValueError(f"this trunk stacks {k} frame(s), got a stack of {x.shape[1]}")
            return x.flatten(1, 2)
        return x.repeat(1, k, 1, 1) if k > 1 else x

    def embed_image(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) — or stacks (B, K, 3, H, W), see ``_trunk_input`` — normalised → L2-normalised embeddings (B, D)."""
        return F.normalize(self.trunk(self._trunk_input(x)), dim=1)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) or stacks (B, K, 3, H, W) normalised → the conv tower's output, global-average-pooled (B, C) (a probe layer)."""
        return self.trunk.tower(self._trunk_input(x)).mean(dim=(2, 3))

    def block_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Frames (B, 3, H, W) or stacks (B, K, 3, H, W) normalised → each conv block's output map (B, C_b, H_b, W_b), first to last (probe diagnostics)."""
        h, maps = self._trunk_input(x), []
        for layer in self.trunk.tower.body:
            if isinstance(layer, nn.MaxPool2d):
                maps.append(h)
            h = layer(h)
        return maps + [h]
