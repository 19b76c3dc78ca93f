"""Helpers for the temporal tests: frames that encode their own index."""

from __future__ import annotations

import numpy as np

FPS = 25
SIZE = 32


def index_frames(n: int, *, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: grey level 2*i (decodable index) and a square moving one pixel per frame."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i] = (2 * i) % 256
        x = (i // 2) % (size - 8)
        frames[i, 4:12, x : x + 8] = 255 - frames[i, 0, 0]
    return frames
