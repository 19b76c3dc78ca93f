"""Frame augmentation shared by every sampler: one random crop + flip per sample (optionally jittered per frame)."""

from __future__ import annotations

import numpy as np


def crop_flip(frames: np.ndarray, rng: np.random.Generator, *, min_area: float = 0.6, jitter: float = 0.0) -> np.ndarray:
    """One random crop (``min_area``-100% of the area, aspect 3/4-4/3), flipped half the time.

    ``frames``: (H, W, 3) or (..., H, W, 3) uint8; every leading frame gets the same crop size and flip.
    ``jitter``: a fraction of the frame side; > 0 moves each leading frame's crop window on its own
    by up to that much (uniform, clamped to the frame; the crop side is capped at 1 − jitter of the
    frame to leave room): spatial jittering of the frames of one sample (Lee et al., ICCV 2017), so
    that pixel positions do not line up from frame to frame.
    """
    if not 0.0 <= jitter < 0.5:
        raise ValueError(f"jitter must be in [0, 0.5), got {jitter}")
    h, w = frames.shape[-3:-1]
    area = rng.uniform(min_area, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(round(min(h * (1 - jitter), np.sqrt(area / aspect))))
    cw = int(round(min(w * (1 - jitter), np.sqrt(area * aspect))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    if jitter > 0 and frames.ndim > 3:
        flat = frames.reshape(-1, h, w, frames.shape[-1])
        dy = rng.uniform(-jitter, jitter, len(flat)) * h
        dx = rng.uniform(-jitter, jitter, len(flat)) * w
        ys = np.clip(np.round(y0 + dy).astype(int), 0, h - ch)
        xs = np.clip(np.round(x0 + dx).astype(int), 0, w - cw)
        out = np.stack([f[y : y + ch, x : x + cw] for f, y, x in zip(flat, ys, xs)]).reshape(*frames.shape[:-3], ch, cw, frames.shape[-1])
    else:
        out = frames[..., y0 : y0 + ch, x0 : x0 + cw, :]
    if rng.random() < 0.5:
        out = out[..., ::-1, :]
    return np.ascontiguousarray(out)
