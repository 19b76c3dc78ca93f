"""Shuffle-and-Learn (Misra, Zitnick & Hebert, "Shuffle and Learn: Unsupervised Learning using
Temporal Order Verification", ECCV 2016).

A tuple of three frames is either in temporal order (b, c, d) or not ((b, a, d) / (b, e, d) with
a, e outside the window from b to d). One shared trunk per frame (``_trunk.FrameTrunk``), the
three features concatenated in the order given, an MLP, and a 2-way classifier::

    frames (B, 3, 3, H, W) → trunk per frame → (B, 3, D) → concat (B, 3D) → fc → ReLU → fc → logits (B, 2)

Class 1 = "in order". Presets: the trunk's (see ``avlearn.models._trunk``) plus ``hidden_dim``
(test_tiny 32, small 256, paper 1024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avlearn.config import resolve_preset
from avlearn.models._registry import register_model
from avlearn.models._trunk import TRUNK_PRESETS, TrunkConfig, TrunkModel


@dataclass(frozen=True)
class ShuffleLearnConfig(TrunkConfig):
    hidden_dim: int = 256  # the MLP over the three concatenated frame features


PRESETS: dict[str, ShuffleLearnConfig] = {
    name: ShuffleLearnConfig(**vars(TRUNK_PRESETS[name]), hidden_dim=hidden) for name, hidden in (("test_tiny", 32), ("small", 256), ("paper", 1024))
}


class ShuffleLearnNet(TrunkModel):
    """Temporal order verification of frame triplets; ``model.trunk`` is the learned per-frame network."""

    def __init__(self, cfg: ShuffleLearnConfig, *, preset: str) -> None:
        super().__init__("shuffle_learn", preset, cfg)
        d = self.trunk.feature_dim
        self.classifier = nn.Sequential(nn.Linear(3 * d, cfg.hidden_dim), nn.ReLU(inplace=True), nn.Linear(cfg.hidden_dim, 2))

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames (B, 3, 3, H, W) normalised, in the order to verify → {"logits": (B, 2)} (class 1 = in order)."""
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, 3, H, W), got {tuple(frames.shape)}")
        f = self.frame_features(frames)  # (B, 3, D)
        return {"logits": self.classifier(f.flatten(1))}


@register_model("shuffle_learn", presets=tuple(PRESETS))
def shuffle_learn(preset: str = "small", **overrides: Any) -> ShuffleLearnNet:
    """Shuffle-and-Learn for ``preset`` with hyper-parameter ``overrides``."""
    return ShuffleLearnNet(resolve_preset(PRESETS, preset, overrides, what="shuffle_learn"), preset=preset)
