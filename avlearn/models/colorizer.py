"""Colorization tracker (Vondrick et al., "Tracking Emerges by Colorizing Videos", ECCV 2018).

A CNN embeds the lightness (L of Lab) of each frame into a feature map at stride
``stride_px``. Every target cell points into up to three reference frames with a
softmax over embedding similarity, and the predicted colour distribution is the
attention-weighted copy of the references' quantised colours (one-hot over ``K``
k-means ab clusters at feature resolution). Training minimises the cross-entropy
with the target's own quantised colours. After training, the same pointer
propagates segmentation labels (``avlearn.track``).

The k-means centres live in the model as the buffer ``ab_centers`` (K, 2) (with
``colors_fitted`` = 1 once fitted), so a checkpoint restores the quantisation.

Presets:
    test_tiny: 64x64 clips, stride 4, 16-d embedding, a few thousand parameters.
    small: 128x128 clips, stride 4, 64-d embedding, a light ResNet (CPU-trainable).
    paper: 256x256 clips, stride 8, ResNet-18-style trunk with 64-d embedding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from avlearn.color import quantize_ab, uint8_to_lab
from avlearn.config import resolve_preset
from avlearn.models._registry import register_model


@dataclass
class ColorizerConfig:
    """Resolved hyper-parameters (stored as ``model.model_config``)."""

    name: str = "colorizer"
    preset: str = "small"
    image_size_px: tuple[int, int] = (128, 128)
    widths: tuple[int, ...] = (32, 64, 64)  # stage widths; stage i > 0 halves the resolution until stride_px
    blocks: tuple[int, ...] = (1, 1, 2)
    stride_px: int = 4
    dilations: tuple[int, ...] = (1, 1, 2)
    embed_dim: int = 64
    num_refs: int = 3
    num_colors: int = 16
    temperature: float = 0.05  # softmax temperature on cosine similarity, training
    track_temperature: float = 0.05  # default for mask propagation
    frame_step_sec: float = 0.2  # spacing of clip frames in training
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("image_size_px", "widths", "blocks", "dilations"):
            d[k] = list(d[k])
        return d


PRESETS: dict[str, ColorizerConfig] = {
    "test_tiny": ColorizerConfig(preset="test_tiny", image_size_px=(64, 64), widths=(8, 16), blocks=(1, 1), dilations=(1, 1), embed_dim=16),
    "small": ColorizerConfig(preset="small"),
    "paper": ColorizerConfig(
        preset="paper", image_size_px=(256, 256), widths=(64, 128, 256, 256), blocks=(2, 2, 2, 2), dilations=(1, 1, 1, 2), stride_px=8, embed_dim=64
    ),
}


class _Block(nn.Module):
    """Basic residual block (two 3x3 convs + BN)."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class Colorizer(nn.Module):
    """Grey frames → embeddings; reference colours → predicted target colours.

    forward(frames (B, T, H, W, 3) uint8, T = num_refs + 1) → {"log_probs": (B, K, h, w),
    "target": (B, h, w) long colour ids of the last frame}.
    """

    def __init__(self, config: ColorizerConfig) -> None:
        super().__init__()
        self.config = config
        w0 = config.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(1, w0, 5, 2, 2, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        stride, cin = 2, w0
        for i, (wd, nb, dil) in enumerate(zip(config.widths, config.blocks, config.dilations)):
            for j in range(nb):
                s = 2 if (j == 0 and i > 0 and stride < config.stride_px) else 1
                stride *= s
                layers.append(_Block(cin, wd, s, dil))
                cin = wd
        if stride != config.stride_px:
            raise ValueError(f"widths/blocks give stride {stride}, config says {config.stride_px}")
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, config.embed_dim, 1)
        self.register_buffer("ab_centers", torch.zeros(config.num_colors, 2))
        self.register_buffer("colors_fitted", torch.zeros((), dtype=torch.uint8))
        self.model_config = config.to_dict()
        self.preprocessing = {
            "kind": "colorization",
            "image_size_px": list(config.image_size_px),
            "color_space": "lab",
            "input": "L/50 - 1",
            "num_colors": config.num_colors,
            "num_refs": config.num_refs,
            "frame_step_sec": config.frame_step_sec,
            "stride_px": config.stride_px,
            "ab_centers": None,
        }

    # -- colours ---------------------------------------------------------------

    def set_color_centers(self, centers: torch.Tensor) -> None:
        """Install fitted (K, 2) ab centres (buffer + preprocessing config)."""
        centers = torch.as_tensor(centers, dtype=torch.float32)
        if centers.shape != self.ab_centers.shape:
            raise ValueError(f"expected centres of shape {tuple(self.ab_centers.shape)}, got {tuple(centers.shape)}")
        self.ab_centers.copy_(centers)
        self.colors_fitted.fill_(1)
        self.preprocessing["ab_centers"] = [[round(float(a), 4), round(float(b), 4)] for a, b in centers.tolist()]

    @property
    def is_fitted(self) -> bool:
        return bool(self.colors_fitted.item())

    # -- embeddings --------------------------------------------------------------

    def embed(self, lightness: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) L in [0, 100] → (B, D, H/stride, W/stride) L2-normalised embeddings."""
        x = lightness / 50.0 - 1.0
        return F.normalize(self.head(self.trunk(self.stem(x))), dim=1)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB (any size) → (B, D, h, w) embeddings of their lightness."""
        lab = uint8_to_lab(frames.to(next(self.parameters()).device))
        return self.embed(lab[:, :1])

    # -- training ----------------------------------------------------------------

    def color_labels(self, lab: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) Lab → (B, h, w) quantised colour ids at feature resolution (ab area-averaged)."""
        if not self.is_fitted:
            raise RuntimeError("colour clusters are not fitted: call set_color_centers (the colorization task does this)")
        ab = F.adaptive_avg_pool2d(lab[:, 1:], size_hw)
        return quantize_ab(ab, self.ab_centers)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames (B, T, H, W, 3) uint8 → {"log_probs": (B, K, h, w), "target": (B, h, w)}; the last frame is the target."""
        b, t = frames.shape[:2]
        if t < 2:
            raise ValueError(f"need at least one reference and a target frame, got T={t}")
        lab = uint8_to_lab(frames.flatten(0, 1))  # (B*T, 3, H, W)
        emb = self.embed(lab[:, :1])  # (B*T, D, h, w)
        _, d, h, w = emb.shape
        labels = self.color_labels(lab, (h, w)).view(b, t, h * w)  # (B, T, h*w)
        emb = emb.view(b, t, d, h * w)
        refs = emb[:, :-1].permute(0, 2, 1, 3).reshape(b, d, (t - 1) * h * w)  # (B, D, M)
        tgt = emb[:, -1]  # (B, D, P)
        attn = torch.softmax(torch.einsum("bdp,bdm->bpm", tgt, refs) / self.config.temperature, dim=-1)  # (B, P, M)
        ref_onehot = F.one_hot(labels[:, :-1].reshape(b, -1), self.config.num_colors).float()  # (B, M, K)
        probs = torch.bmm(attn, ref_onehot)  # (B, P, K)
        log_probs = torch.log(probs.clamp_min(1e-8)).transpose(1, 2).reshape(b, -1, h, w).contiguous()
        return {"log_probs": log_probs, "target": labels[:, -1].view(b, h, w)}


@register_model("colorizer", presets=tuple(PRESETS))
def colorizer(preset: str = "small", **overrides: Any) -> Colorizer:
    """The colorization tracker; ``overrides`` replace ColorizerConfig fields."""
    return Colorizer(resolve_preset(PRESETS, preset, overrides, what="colorizer"))
