"""CIE Lab colour conversion (sRGB, D65) and k-means quantisation of the ab plane, in torch.

Colorization as a pretext task (Zhang et al. 2016; Vondrick et al. 2018) predicts
the colour channels of a frame from its lightness. Lab separates the two: the
model sees ``L`` and predicts ``ab``. Colours are quantised into ``K`` clusters
(k-means on ab values of training frames) so the prediction is a classification
over ``K`` colours, which copes with multi-modal colours better than regression.

Ranges: ``L`` in [0, 100], ``a`` and ``b`` roughly in [-110, 110] for sRGB input.
"""

from __future__ import annotations

import numpy as np
import torch

# sRGB (linear) → XYZ, D65 reference white (IEC 61966-2-1).
_RGB2XYZ = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754], dtype=torch.float64)
_DELTA = 6.0 / 29.0


def _channel_matmul(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply a 3x3 matrix along ``dim`` (size 3) of ``x``."""
    x = x.movedim(dim, -1)
    y = x @ m.to(dtype=x.dtype, device=x.device).T
    return y.movedim(-1, dim)


def _view_white(x: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * x.ndim
    shape[dim] = 3
    return _WHITE_D65.to(dtype=x.dtype, device=x.device).view(shape)


def rgb_to_lab(rgb: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """sRGB in [0, 1] → CIE Lab (D65).

    Args:
        rgb: float tensor with a channel axis of size 3 at ``dim`` (default: (..., 3, H, W)).
        dim: the channel axis.

    Returns:
        Same shape; channels L in [0, 100], a, b in about [-110, 110].
    """
    if rgb.shape[dim] != 3:
        raise ValueError(f"expected 3 channels on dim {dim}, got shape {tuple(rgb.shape)}")
    rgb = rgb.clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = _channel_matmul(linear, _RGB2XYZ, dim) / _view_white(linear, dim)
    f = torch.where(xyz > _DELTA**3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(dim)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=dim)
    return lab


def lab_to_rgb(lab: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """CIE Lab (D65) → sRGB in [0, 1] (out-of-gamut values are clipped). Inverse of :func:`rgb_to_lab`."""
    if lab.shape[dim] != 3:
        raise ValueError(f"expected 3 channels on dim {dim}, got shape {tuple(lab.shape)}")
    lightness, a, b = lab.unbind(dim)
    fy = (lightness + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=dim)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _view_white(f, dim)
    linear = _channel_matmul(xyz, _XYZ2RGB, dim).clamp(0.0, 1.0)
    rgb = torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055)
    return rgb.clamp(0.0, 1.0)


def uint8_to_lab(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB → (..., 3, H, W) float32 Lab."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3) uint8 frames, got {x.dtype} {tuple(x.shape)}")
    return rgb_to_lab(x.movedim(-1, -3).float() / 255.0)


def fit_ab_kmeans(ab: np.ndarray | torch.Tensor, k: int = 16, *, seed: int = 0, niter: int = 25, max_points: int = 200_000) -> np.ndarray:
    """k-means cluster centres of ab colour values (FAISS k-means).

    Args:
        ab: (N, 2) ab values from training frames.
        k: number of colour clusters (16 in Vondrick et al.).
        seed: makes the clustering deterministic.
        max_points: a random subset of at most this many points is clustered.

    Returns:
        (k, 2) float32 centres, sorted by chroma (grey-ish first) so the order is stable.
    """
    import faiss

    x = np.ascontiguousarray(torch.as_tensor(ab).reshape(-1, 2).cpu().numpy(), dtype=np.float32)
    if len(x) < k:
        raise ValueError(f"need at least k={k} ab samples to fit colour clusters, got {len(x)}")
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    # Tiny jitter so degenerate inputs (few distinct colours) still yield k distinct centres.
    x = x + rng.normal(0.0, 1e-3, x.shape).astype(np.float32)
    km = faiss.Kmeans(2, k, niter=niter, nredo=5, seed=seed, verbose=False, max_points_per_centroid=max(len(x) // k + 1, 39))
    km.train(x)
    centres = km.centroids.astype(np.float32)
    order = np.lexsort((np.arctan2(centres[:, 1], centres[:, 0]), np.linalg.norm(centres, axis=1)))
    return centres[order]


def quantize_ab(ab: torch.Tensor, centres: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Index of the nearest colour centre for every ab value.

    Args:
        ab: tensor with an axis of size 2 at ``dim`` (default (..., 2, H, W)).
        centres: (K, 2) cluster centres.

    Returns:
        long tensor of ``ab``'s shape without ``dim``, values in [0, K).
    """
    if ab.shape[dim] != 2:
        raise ValueError(f"expected 2 ab channels on dim {dim}, got shape {tuple(ab.shape)}")
    x = ab.movedim(dim, -1).float()
    c = centres.to(device=x.device, dtype=torch.float32)
    d2 = (x.unsqueeze(-2) - c).pow(2).sum(-1)  # (..., K)
    return d2.argmin(-1)


def dequantize_ab(labels: torch.Tensor, centres: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Colour indices (...) or a colour distribution (..., K at ``dim``) → ab values (2 channels at ``dim``)."""
    c = centres.to(device=labels.device, dtype=torch.float32)
    if labels.dtype in (torch.int64, torch.int32, torch.uint8):
        return c[labels.long()].movedim(-1, dim)
    probs = labels.movedim(dim, -1)
    return (probs @ c).movedim(-1, dim)
