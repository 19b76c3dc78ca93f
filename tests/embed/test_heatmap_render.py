"""Heatmaps: bilinear upsampling, the peak, a PNG overlay of the frame's size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from avlearn.embed.heatmap import blend, peak, render_overlay, upsample_heatmap


def test_upsample_shape_range_and_centres() -> None:
    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = 1.0
    up = upsample_heatmap(grid, (40, 80))
    assert up.shape == (40, 80) and up.dtype == np.float32
    assert 0.0 <= up.min() and up.max() <= 1.0
    # the hottest upsampled pixels surround the centre of cell (1, 2): y ≈ 15, x ≈ 50
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert abs(y - 15) <= 1 and abs(x - 50) <= 1
    np.testing.assert_allclose(upsample_heatmap(np.full((3, 5), 0.25), (7, 9)), 0.25, atol=1e-6)


def test_peak_is_the_centre_of_the_hottest_cell() -> None:
    grid = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    grid[6, 1] = 2.0
    assert peak(grid) == pytest.approx(((6 + 0.5) / 7, (1 + 0.5) / 5))
    with pytest.raises(ValueError):
        peak(np.zeros(5))


def test_render_overlay_is_a_png_of_the_frame_size() -> None:
    frame = np.full((60, 90, 3), 100, np.uint8)
    grid = np.zeros((4, 4), np.float32)
    grid[0, 3] = 1.0  # hot: top-right
    png = render_overlay(frame, grid)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape == frame.shape
    np.testing.assert_array_equal(img, blend(frame, grid))
    hot, cold = img[5, 85].astype(int), img[55, 5].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]  # red-ish where hot, blue-ish where cold
    # alpha 0 → the frame itself
    plain = np.asarray(Image.open(io.BytesIO(render_overlay(frame, grid, alpha=0.0))))
    np.testing.assert_array_equal(plain, frame)


def test_normalize_stretches_a_flat_looking_grid() -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    grid = np.array([[0.50, 0.52], [0.50, 0.50]], np.float32)
    raw, stretched = blend(frame, grid, alpha=1.0), blend(frame, grid, alpha=1.0, normalize=True)
    assert int(stretched[1, 7, 0]) > int(raw[1, 7, 0])


@pytest.mark.parametrize("frame", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8)])
def test_bad_frame_raises(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="frame"):
        render_overlay(frame, np.zeros((2, 2), np.float32))
