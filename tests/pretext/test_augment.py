"""crop_flip: one crop and flip per sample; with jitter, each frame of the sample moves on its own."""

from __future__ import annotations

import numpy as np
import pytest

from avlearn.pretext.augment import crop_flip


def _coords(n: int, size: int = 64) -> np.ndarray:
    """(n, size, size, 3) uint8 frames whose channels 0/1 hold the pixel's x/y coordinate."""
    yy, xx = np.mgrid[0:size, 0:size]
    frame = np.stack([xx, yy, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    return np.repeat(frame[None], n, axis=0)


def test_without_jitter_every_frame_gets_the_same_crop_and_flip() -> None:
    for seed in range(20):
        out = crop_flip(_coords(5), np.random.default_rng(seed))
        assert out.shape[0] == 5 and 0.6 * 64 * 64 * 0.9 <= out.shape[1] * out.shape[2] <= 64 * 64
        assert (out == out[:1]).all()


@pytest.mark.parametrize("jitter", [0.1, 0.25])
def test_jitter_moves_each_frame_within_the_bound_and_keeps_size_and_flip(jitter: float) -> None:
    moved = 0
    for seed in range(20):
        out = crop_flip(_coords(6), np.random.default_rng(seed), jitter=jitter)
        h, w = out.shape[1:3]
        assert h <= round(64 * (1 - jitter)) and w <= round(64 * (1 - jitter))
        x = out[:, 0, :, 0].astype(int)  # the x coordinate along the first row of each frame
        y = out[:, :, 0, 1].astype(int)
        flipped = x[0, 0] > x[0, -1]
        assert all((x[i, 0] > x[i, -1]) == flipped for i in range(6))  # one flip for the sample
        left = x.min(axis=1)
        top = y[:, 0]
        assert np.ptp(left) <= 2 * jitter * 64 + 1 and np.ptp(top) <= 2 * jitter * 64 + 1
        moved += int(np.ptp(left) > 0 or np.ptp(top) > 0)
    assert moved >= 18  # frames of a sample are not aligned


def test_jitter_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="jitter"):
        crop_flip(_coords(2), np.random.default_rng(0), jitter=0.5)
