"""Localization heatmaps: the Heatmap value, upsampling to a frame, the peak, a PNG overlay.

A grid (h, w) float32 in [0, 1] covers the whole frame (the preprocessor resizes the whole
frame, so cell (i, j) is the region [i/h, (i+1)/h) × [j/w, (j+1)/w) in normalised units).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

# A "jet"-like colour map (blue → cyan → green → yellow → red) as anchor colours, interpolated to 256 steps.
_ANCHORS = np.array([[0, 0, 128], [0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0], [128, 0, 0]], np.float32)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.uint8)


@dataclass(frozen=True)
class Heatmap:
    """Where the sound comes from in one frame.

    Attributes:
        grid: (h, w) float32 in [0, 1], per-cell "this region makes the sound" probability.
        score: the clip-level correspondence probability (max of ``grid``).
        peak_yx: centre of the hottest cell, (y, x) normalised to [0, 1].
    """

    grid: np.ndarray
    score: float
    peak_yx: tuple[float, float]


def _check_grid(grid: np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"heatmap grid: expected a non-empty (h, w) array, got shape {g.shape}")
    return g


def peak(grid: np.ndarray) -> tuple[float, float]:
    """Centre of the grid's maximum cell, (y, x) in [0, 1] (first maximum on ties)."""
    g = _check_grid(grid)
    iy, ix = np.unravel_index(int(np.argmax(g)), g.shape)
    return (float((iy + 0.5) / g.shape[0]), float((ix + 0.5) / g.shape[1]))


def upsample_heatmap(grid: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """Bilinear (h, w) → (H, W) float32 (cell centres stay at cell centres; values stay in the grid's range)."""
    g = _check_grid(grid)
    h, w = int(size_px[0]), int(size_px[1])
    if h < 1 or w < 1:
        raise ValueError(f"size_px must be positive, got {size_px}")
    t = torch.from_numpy(np.ascontiguousarray(g))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) → RGB uint8 (H, W, 3) through the jet-like colour map."""
    idx = np.clip(np.rint(np.asarray(values, np.float32) * 255), 0, 255).astype(np.uint8)
    return _LUT[idx]


def blend(frame: np.ndarray, grid: np.ndarray, *, alpha: float = 0.5, normalize: bool = False) -> np.ndarray:
    """The colour-mapped, upsampled grid blended over ``frame`` → (H, W, 3) uint8.

    Args:
        frame: (H, W, 3) uint8 RGB.
        grid: (h, w) values in [0, 1].
        alpha: weight of the colour map (0 = frame only).
        normalize: stretch the grid to [0, 1] (min-max) before colouring.
    """
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"frame: expected uint8 RGB (H, W, 3), got {f.dtype} {f.shape}")
    g = _check_grid(grid)
    if normalize:
        lo, hi = float(g.min()), float(g.max())
        g = (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)
    heat = colorize(upsample_heatmap(np.clip(g, 0.0, 1.0), f.shape[:2])).astype(np.float32)
    out = (1.0 - alpha) * f.astype(np.float32) + alpha * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_overlay(frame: np.ndarray, grid: np.ndarray, *, alpha: float = 0.5, normalize: bool = False) -> bytes:
    """PNG bytes of ``blend(frame, grid)``, the frame's size (H, W)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(blend(frame, grid, alpha=alpha, normalize=normalize)).save(buf, format="PNG")
    return buf.getvalue()
