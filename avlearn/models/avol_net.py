"""AVOL-Net: audio-visual object localization network (Arandjelović & Zisserman, ECCV 2018, §5).

The vision tower keeps its spatial grid; 1×1 convs (the paper's fully-convolutional fc layers)
map each cell to a D-d L2-normalised embedding. The audio tower is AVE-Net's. Each cell's dot
product with the audio embedding, calibrated by a learnable scale and bias and squashed by a
sigmoid, says "this cell makes the sound"; the max over cells (multiple-instance learning) is
the clip-level correspondence score, and the per-cell map is the localization heatmap.

    frame (B, 3, H, W) → ConvTower → max pool (grid_pool) → conv5 1×1 → ReLU → conv6 1×1 → L2 per cell → (B, D, h, w)
    spectrogram (B, 1, F, T) → ConvTower → global max pool → fc1 → ReLU → fc2 → L2 → (B, D)
    scale · ⟨cell, audio⟩ + bias → (B, h, w) logits → max over cells → logit (B,)

Grids: ``paper`` 224 px → 14×14, ``small`` 128 px → 8×8, ``test_tiny`` 32 px → 4×4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from avlearn.config import resolve_preset
from avlearn.media.features import PAPER_AUDIO, SMALL_AUDIO
from avlearn.models._registry import register_model
from avlearn.models._towers import TINY_AUDIO, ConvTower, TowerConfig, init_weights, json_config, make_preprocessing
from avlearn.models.ave_net import PRESETS as AVE_PRESETS
from avlearn.models.ave_net import EmbeddingHead


@dataclass(frozen=True)
class AVOLConfig(TowerConfig):
    """AVE-Net's hyper-parameters plus the localization head's."""

    grid_pool: int = 1  # max pool of the vision feature map before the 1x1 convs (the heatmap grid)
    init_scale: float = 5.0  # initial calibration of the cosine similarity: logit = scale * cos + bias
    init_bias: float = 0.0


PRESETS: dict[str, AVOLConfig] = {
    "test_tiny": AVOLConfig(**{**vars(AVE_PRESETS["test_tiny"]), "audio": TINY_AUDIO, "grid_pool": 1}),
    "small": AVOLConfig(**{**vars(AVE_PRESETS["small"]), "audio": SMALL_AUDIO, "grid_pool": 1}),
    "paper": AVOLConfig(**{**vars(AVE_PRESETS["paper"]), "audio": PAPER_AUDIO, "grid_pool": 2}),
}


class AVOLNet(nn.Module):
    """AVOL-Net. See the module docstring; build with ``create_model("avol_net", preset)``.

    Attributes:
        preprocessing, model_config: as for AVE-Net.
        embed_dim: D.
        grid_size: (h, w) of the heatmap at the preset's image size.
    """

    def __init__(self, cfg: AVOLConfig, *, preset: str = "custom") -> None:
        super().__init__()
        self.vision = ConvTower(3, cfg.vision_channels, convs_per_block=cfg.convs_per_block, stem_stride=cfg.vision_stem_stride)
        self.audio = ConvTower(1, cfg.audio_channels, convs_per_block=cfg.convs_per_block, stem_stride=cfg.audio_stem_stride)
        pool = int(cfg.grid_pool)
        self.grid_pool = nn.MaxPool2d(pool) if pool > 1 else nn.Identity()
        self.conv5 = nn.Conv2d(self.vision.out_channels, cfg.hidden_dim, 1)
        self.conv6 = nn.Conv2d(cfg.hidden_dim, cfg.embed_dim, 1)
        self.audio_head = EmbeddingHead(self.audio.out_channels, cfg.hidden_dim, cfg.embed_dim)
        init_weights(self)
        # Calibration of the cosine similarity in [-1, 1] (the paper's 1×1 conv with one weight and a bias).
        self.scale = nn.Parameter(torch.tensor(float(cfg.init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(cfg.init_bias)))
        self.embed_dim = int(cfg.embed_dim)
        h, w = cfg.image_size_px
        step = self.vision.downsample * pool
        self.grid_size = (h // step, w // step)
        self.model_config = json_config("avol_net", preset, cfg)
        self.preprocessing = make_preprocessing(cfg.image_size_px, cfg.audio)

    def cell_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames (B, 3, H, W) → per-cell embeddings (B, D, h, w), L2-normalised over D."""
        fmap = self.grid_pool(self.vision(x))
        return F.normalize(self.conv6(F.relu(self.conv5(fmap))), dim=1)

    def embed_image(self, x: torch.Tensor) -> torch.Tensor:
        """A whole-frame embedding for retrieval: max over cells of the cell embeddings, L2-normalised → (B, D)."""
        return F.normalize(torch.amax(self.cell_embeddings(x), dim=(2, 3)), dim=1)

    def embed_audio(self, s: torch.Tensor) -> torch.Tensor:
        """Log-spectrograms (B, 1, F, T) → (B, D) L2-normalised."""
        return self.audio_head(self.audio(s))

    def cell_logits(self, cells: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Cells (B, D, h, w) and audio (B, D) → calibrated similarity logits (B, h, w)."""
        return self.scale * torch.einsum("bdhw,bd->bhw", cells, audio) + self.bias

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frames (B, 3, H, W), spectrograms (B, 1, F, T) → {"logit": (B,), "score": (B,), "heatmap": (B, h, w)}.

        ``logit`` is the max over cells of the pre-sigmoid map (train with BCE-with-logits),
        ``score = sigmoid(logit)`` equals the max of ``heatmap = sigmoid(cell logits)``.
        """
        logits = self.cell_logits(self.cell_embeddings(x), self.embed_audio(s))
        logit = torch.amax(logits, dim=(1, 2))
        return {"logit": logit, "score": torch.sigmoid(logit), "heatmap": torch.sigmoid(logits)}


@register_model("avol_net", presets=tuple(PRESETS))
def avol_net(preset: str = "small", **overrides: Any) -> AVOLNet:
    """AVOL-Net for ``preset`` with hyper-parameter ``overrides`` (fields of ``AVOLConfig``)."""
    return AVOLNet(resolve_preset(PRESETS, preset, overrides, what="avol_net"), preset=preset)
