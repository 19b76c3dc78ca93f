"""Shared building blocks for the audio-visual models: VGG-style conv towers and small helpers.

Arandjelović & Zisserman, "Objects that Sound" (ECCV 2018), Fig. 2: each tower is a stack of
blocks of 3×3 conv → BatchNorm → ReLU layers with 2×2 max pooling between blocks (none after
the last one). The paper's towers have 4 blocks of 2 convs with 64-128-256-512 channels
(224×224 image → 28×28×512; 257×200 spectrogram → 32×25×512). ``stem_stride`` > 1 makes the
very first conv strided, which CPU presets use to cut the cost of the full-resolution layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avlearn.config import config_to_json
from avlearn.media.features import AudioFeatureConfig

# ImageNet statistics: frames are normalised with these before entering the vision tower.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def conv_bn_relu(in_ch: int, out_ch: int, *, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """kernel×kernel conv (no bias: BN follows) → BatchNorm2d → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ConvTower(nn.Module):
    """VGG-style tower: (B, in_ch, H, W) → (B, channels[-1], H / (stem_stride · 2^(n-1)), W / ...).

    Args:
        in_channels: 3 for frames, 1 for spectrograms.
        channels: output channels of each block.
        convs_per_block: conv3×3-BN-ReLU layers per block (paper: 2).
        stem_stride: stride of the first conv (paper: 1).
    """

    def __init__(self, in_channels: int, channels: Sequence[int], *, convs_per_block: int = 2, stem_stride: int = 1) -> None:
        super().__init__()
        if not channels or convs_per_block < 1 or stem_stride < 1:
            raise ValueError(f"bad tower spec: channels={channels}, convs_per_block={convs_per_block}, stem_stride={stem_stride}")
        layers: list[nn.Module] = []
        prev = in_channels
        for b, ch in enumerate(channels):
            if b > 0:
                layers.append(nn.MaxPool2d(2))
            for c in range(convs_per_block):
                stride = stem_stride if (b == 0 and c == 0) else 1
                layers.append(conv_bn_relu(prev, ch, stride=stride))
                prev = ch
        self.body = nn.Sequential(*layers)
        self.out_channels = prev
        self.downsample = stem_stride * 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs/linears (fan-out, ReLU), BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# Audio front-end of the ``test_tiny`` presets: 16 kHz, 1 s → 1 × 32 × 50 log-mel.
TINY_AUDIO = AudioFeatureConfig(kind="mel", sample_rate_hz=16000, win_sec=0.025, hop_sec=0.020, n_fft=512, n_mels=32)


def resolve_audio(audio: AudioFeatureConfig | dict) -> AudioFeatureConfig:
    """An AudioFeatureConfig from itself or its ``to_dict()`` form (as read back from JSON)."""
    return audio if isinstance(audio, AudioFeatureConfig) else AudioFeatureConfig.from_dict(dict(audio))


def make_preprocessing(image_size_px: Sequence[int], audio: AudioFeatureConfig) -> dict[str, Any]:
    """The JSON-ready ``model.preprocessing`` dict that ``avlearn.embed.preprocess.Preprocessor`` reads."""
    return {
        "image_size_px": [int(image_size_px[0]), int(image_size_px[1])],
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "audio": audio.to_dict(),
        "sample_rate_hz": audio.sample_rate_hz,
        "segment_sec": audio.duration_sec,
    }


@dataclass(frozen=True)
class TowerConfig:
    """Hyper-parameters of the two-tower models (AVE-Net; AVOL-Net adds its own), one preset each."""

    image_size_px: tuple[int, int]
    audio: AudioFeatureConfig
    vision_channels: tuple[int, ...]
    audio_channels: tuple[int, ...]
    convs_per_block: int
    vision_stem_stride: int
    audio_stem_stride: int
    hidden_dim: int
    embed_dim: int


def json_config(name: str, preset: str, cfg: Any) -> dict[str, Any]:
    """``model.model_config``: name, preset and every resolved hyper-parameter, JSON-ready."""
    return {"name": name, "preset": preset, **config_to_json(cfg)}
