"""Lab conversion and k-means ab quantisation, and their round trip through a checkpoint."""

import numpy as np
import torch

from avlearn.color import dequantize_ab, fit_ab_kmeans, lab_to_rgb, quantize_ab, rgb_to_lab, uint8_to_lab


def test_lab_round_trip_and_reference_values():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 16, 16, generator=g)
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1e-4
    white = rgb_to_lab(torch.ones(3, 1, 1)).flatten()
    red = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0]), atol=0.05)
    assert torch.allclose(red, torch.tensor([53.24, 80.09, 67.20]), atol=0.1)  # CIE Lab of sRGB red (D65)


def test_uint8_to_lab_layout():
    frames = np.zeros((3, 8, 10, 3), np.uint8)
    frames[..., 2] = 255
    lab = uint8_to_lab(frames)
    assert lab.shape == (3, 3, 8, 10)
    assert lab[:, 2].max() < -100  # blue has a strongly negative b


def test_kmeans_quantisation_shapes_and_nearest():
    rng = np.random.default_rng(0)
    ab = np.concatenate([rng.normal(c, 1.0, (200, 2)) for c in ([-40, 0], [0, 0], [40, 30], [10, -50])]).astype(np.float32)
    centres = fit_ab_kmeans(ab, 4, seed=0)
    assert centres.shape == (4, 2)
    c = torch.from_numpy(centres)
    labels = quantize_ab(torch.from_numpy(ab).T.reshape(1, 2, 20, 40), c)
    assert labels.shape == (1, 20, 40) and labels.dtype == torch.int64
    back = dequantize_ab(labels, c)
    assert back.shape == (1, 2, 20, 40)
    assert (back - torch.from_numpy(ab).T.reshape(1, 2, 20, 40)).abs().max() < 6  # every point is near its centre
    assert np.array_equal(fit_ab_kmeans(ab, 4, seed=0), centres)  # deterministic


def test_centres_saved_and_restored_with_checkpoint(tmp_path):
    from avlearn.checkpoint import load_checkpoint, save_checkpoint
    from avlearn.models import create_model

    model = create_model("colorizer", "test_tiny")
    assert not model.is_fitted
    centres = torch.arange(32, dtype=torch.float32).view(16, 2)
    model.set_color_centers(centres)
    save_checkpoint(tmp_path / "ck", model)
    loaded, config = load_checkpoint(tmp_path / "ck")
    assert loaded.is_fitted
    assert torch.equal(loaded.ab_centers, centres)
    assert config["preprocessing"]["ab_centers"][3] == [6.0, 7.0]
