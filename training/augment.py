"""Frame augmentation shared by the training tasks."""

from __future__ import annotations

import numpy as np


def crop_flip(frames: np.ndarray, rng: np.random.Generator, *, min_area: float = 0.6) -> np.ndarray:
    """One random crop (``min_area``-100% of the area, aspect 3/4-4/3), flipped half the time.

    ``frames``: (H, W, 3) or (..., H, W, 3) uint8; every leading frame gets the same crop and flip.
    """
    h, w = frames.shape[-3:-1]
    area = rng.uniform(min_area, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(round(min(h, np.sqrt(area / aspect))))
    cw = int(round(min(w, np.sqrt(area * aspect))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    out = frames[..., y0 : y0 + ch, x0 : x0 + cw, :]
    if rng.random() < 0.5:
        out = out[..., ::-1, :]
    return np.ascontiguousarray(out)
