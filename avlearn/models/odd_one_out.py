"""Odd-One-Out networks (Fernando, Bilen, Gavves & Gould, "Self-Supervised Video Representation
Learning With Odd-One-Out Networks", CVPR 2017).

N subsequences of one video are shown, N − 1 in their true temporal order and one shuffled;
the network names the odd one. Each subsequence of K frames is encoded by one shared encoder,
the N encodings are fused by the sum of pairwise differences, and an N-way classifier follows::

    x (B, N, K, 3, H, W) → encoder per subsequence → v (B, N, E)
    fused = Σ_{i<j} (v_j − v_i) / #pairs = Σ_n (2n − N − 1) v_n / #pairs   (B, E)    [n = 1..N]
    fused → fc → ReLU → fc → logits (B, N)

Encoders (``encoder``):
- ``"frames"``: the frames fused late: the shared per-frame trunk
  (``_trunk.FrameTrunk``) on each of the K frames, the K features concatenated in the order
  given, fc → ReLU → v. The trunk sees raw frames, exactly as the Embedder and the probe do.
- ``"stacked"`` (default): the K frames stacked on the channel axis (early fusion, 3K input channels)
  through the trunk once per subsequence, fc → ReLU → v. As cheap as ``dynamic`` (N trunk
  passes), and it sees the frames themselves, not one fixed linear combination of them. A
  single frame is embedded as a still (the frame shown K times), K frames as a stack (``TrunkModel._trunk_input``).
- ``"differences"``: like ``"stacked"``, but the stack is the first frame followed by the K − 1
  differences of consecutive frames (x_1, x_2 − x_1, …, x_K − x_{K−1}): the change between frames is
  in the input itself instead of having to be found by the first conv among the appearance of K
  frames (the input of temporal-difference streams). A single frame is embedded as a still: the
  frame with zero differences.
- ``"dynamic"``: one dynamic image per subsequence (approximate rank pooling of the K frames,
  Bilen et al. CVPR 2016: Σ_t α_t I_t with α_t = 2(K − t + 1) − (K + 1)(H_K − H_{t−1})),
  then the trunk once per subsequence, fc → ReLU → v. Cheaper (N trunk passes instead of N·K),
  but the trunk then learns on dynamic images, not frames.

Presets: the trunk's plus ``num_questions`` N = 6, ``frames_per_subsequence`` K
(test_tiny 3, small 4, paper 6), ``encoder``, ``subsequence_dim`` E and ``hidden_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from avlearn.config import resolve_preset
from avlearn.models._registry import register_model
from avlearn.models._trunk import TRUNK_PRESETS, TrunkConfig, TrunkModel

ENCODERS = ("frames", "stacked", "differences", "dynamic")
EARLY_FUSION = ("stacked", "differences")  # encoders whose trunk takes the K frames at once


@dataclass(frozen=True)
class OddOneOutConfig(TrunkConfig):
    num_questions: int = 6  # N subsequences per question
    frames_per_subsequence: int = 4  # K frames each
    encoder: Literal["frames", "stacked", "differences", "dynamic"] = "stacked"  # how a subsequence is encoded
    subsequence_dim: int = 256  # E of the subsequence encodings
    hidden_dim: int = 256  # the classifier's hidden layer


PRESETS: dict[str, OddOneOutConfig] = {
    "test_tiny": OddOneOutConfig(**vars(TRUNK_PRESETS["test_tiny"]), frames_per_subsequence=3, subsequence_dim=32, hidden_dim=32),
    "small": OddOneOutConfig(**vars(TRUNK_PRESETS["small"]), frames_per_subsequence=4, subsequence_dim=256, hidden_dim=256),
    "paper": OddOneOutConfig(**vars(TRUNK_PRESETS["paper"]), frames_per_subsequence=6, subsequence_dim=1024, hidden_dim=1024),
}


def rank_pool_weights(k: int) -> torch.Tensor:
    """Approximate rank pooling coefficients α_t (t = 1..k) on raw frames, scaled to Σ|α| = 1; (k,)."""
    harmonic = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1.0 / torch.arange(1, k + 1, dtype=torch.float64), 0)])
    t = torch.arange(1, k + 1, dtype=torch.float64)
    alpha = 2 * (k - t + 1) - (k + 1) * (harmonic[k] - harmonic[t.long() - 1])
    return (alpha / alpha.abs().sum().clamp_min(1e-12)).float()


def frame_differences(x: torch.Tensor) -> torch.Tensor:
    """(..., K, 3, H, W) normalised frames → (..., K, 3, H, W): the first frame, then the K − 1 differences of consecutive frames."""
    return torch.cat([x[..., :1, :, :, :], x[..., 1:, :, :, :] - x[..., :-1, :, :, :]], dim=-4)


def sum_of_differences(v: torch.Tensor) -> torch.Tensor:
    """(B, N, E) → Σ_{i<j} (v_j − v_i) / (N(N−1)/2) (B, E), computed as Σ_n (2n − N − 1) v_n / #pairs.

    Dividing by the number of pairs keeps the fused scale independent of N.
    """
    n = v.shape[1]
    coef = (2 * torch.arange(1, n + 1, device=v.device, dtype=v.dtype) - n - 1).view(1, n, 1)
    return (coef * v).sum(dim=1) / (n * (n - 1) / 2)


class OddOneOutNet(TrunkModel):
    """Odd-one-out classification over N subsequences; ``model.trunk`` is the learned per-frame network."""

    def __init__(self, cfg: OddOneOutConfig, *, preset: str) -> None:
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {cfg.encoder!r}")
        if cfg.num_questions < 2 or cfg.frames_per_subsequence < 2:
            raise ValueError("need num_questions >= 2 and frames_per_subsequence >= 2")
        in_frames = cfg.frames_per_subsequence if cfg.encoder in EARLY_FUSION else 1
        super().__init__("odd_one_out", preset, cfg, in_frames=in_frames)
        self.num_questions = cfg.num_questions
        self.frames_per_subsequence = cfg.frames_per_subsequence
        self.encoder = cfg.encoder
        d, e, h = self.trunk.feature_dim, cfg.subsequence_dim, cfg.hidden_dim
        k_in = self.frames_per_subsequence if self.encoder == "frames" else 1
        self.subsequence = nn.Sequential(nn.Linear(k_in * d, e), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(e, h), nn.ReLU(inplace=True), nn.Linear(h, self.num_questions))
        self.register_buffer("alpha", rank_pool_weights(self.frames_per_subsequence), persistent=False)

    @property
    def input_frames(self) -> int:
        """K for the stacked, differences and dynamic encoders (the trunk was trained on K frames at once), 1 for frames."""
        return self.frames_per_subsequence if self.encoder != "frames" else 1

    def _trunk_input(self, x: torch.Tensor) -> torch.Tensor:
        """As ``TrunkModel._trunk_input``; the dynamic encoder also takes (B, K, 3, H, W) stacks, as their dynamic images;
        the differences encoder takes stacks as their first frame and differences, and a frame (B, 3, H, W) as a still (zero differences)."""
        if self.encoder == "differences":
            if x.dim() == 5:
                if x.shape[1] != self.frames_per_subsequence:
                    raise ValueError(f"this trunk stacks {self.frames_per_subsequence} frame(s), got a stack of {x.shape[1]}")
                return frame_differences(x).flatten(1, 2)
            return torch.cat([x, x.new_zeros(x.shape[0], 3 * (self.frames_per_subsequence - 1), *x.shape[2:])], dim=1)
        if self.encoder == "dynamic" and x.dim() == 5:
            if x.shape[1] != self.frames_per_subsequence:
                raise ValueError(f"this trunk takes dynamic images of {self.frames_per_subsequence} frames, got a stack of {x.shape[1]}")
            return self.dynamic_images(x)
        return super()._trunk_input(x)

    def dynamic_images(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K, 3, H, W) normalised frames → (..., 3, H, W) dynamic images."""
        return torch.einsum("k,...kchw->...chw", self.alpha.to(x.dtype), x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Subsequences (B, N, K, 3, H, W) → encodings v (B, N, E)."""
        if self.encoder == "frames":
            f = self.frame_features(x)  # (B, N, K, D)
            return self.subsequence(f.flatten(2))
        if self.encoder in EARLY_FUSION:
            if self.encoder == "differences":
                x = frame_differences(x)
            b, n, k, c, h, w = x.shape
            return self.subsequence(self.trunk(x.reshape(b * n, k * c, h, w)).reshape(b, n, -1))
        return self.subsequence(self.frame_features(self.dynamic_images(x)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, N, K, 3, H, W) normalised → {"logits": (B, N)}: which subsequence is out of order."""
        if x.dim() != 6 or x.shape[1] != self.num_questions or x.shape[2] != self.frames_per_subsequence:
            raise ValueError(f"expected (B, {self.num_questions}, {self.frames_per_subsequence}, 3, H, W), got {tuple(x.shape)}")
        return {"logits": self.classifier(sum_of_differences(self.encode(x)))}


@register_model("odd_one_out", presets=tuple(PRESETS))
def odd_one_out(preset: str = "small", **overrides: Any) -> OddOneOutNet:
    """Odd-One-Out network for ``preset`` with hyper-parameter ``overrides``."""
    return OddOneOutNet(resolve_preset(PRESETS, preset, overrides, what="odd_one_out"), preset=preset)
