"""The temporal models: shapes, the sum-of-differences fusion, dynamic images, checkpoints."""

from __future__ import annotations

import itertools

import pytest
import torch

from avlearn.models import create_model
from avlearn.models.odd_one_out import rank_pool_weights, sum_of_differences


def test_sum_of_differences_is_the_pairwise_sum() -> None:
    v = torch.randn(2, 5, 7)
    pairs = list(itertools.combinations(range(5), 2))
    expected = sum(v[:, j] - v[:, i] for i, j in pairs) / len(pairs)
    torch.testing.assert_close(sum_of_differences(v), expected)


def test_dynamic_image_is_order_sensitive() -> None:
    alpha = rank_pool_weights(4)
    assert alpha.abs().sum() == pytest.approx(1.0) and alpha[0] < 0 < alpha[-1]
    model = create_model("odd_one_out", "test_tiny", encoder="dynamic")
    x = torch.randn(1, 3, 3, 32, 32)
    assert not torch.allclose(model.dynamic_images(x), model.dynamic_images(x.flip(1)))


@pytest.mark.parametrize("name, shape, classes", [("shuffle_learn", (2, 3, 3, 32, 32), 2), ("odd_one_out", (2, 6, 3, 3, 32, 32), 6)])
def test_forward_embed_and_checkpoint_roundtrip(tmp_path, name, shape, classes) -> None:
    from avlearn.checkpoint import load_checkpoint, save_checkpoint
    from avlearn.embed.preprocess import Preprocessor

    model = create_model(name, "test_tiny").eval()
    x = torch.randn(*shape)
    assert model(x)["logits"].shape == (2, classes)
    with pytest.raises(ValueError):
        model(torch.randn(2, 4, 3, 32, 32))
    save_checkpoint(tmp_path / name, model)
    again, config = load_checkpoint(tmp_path / name)
    torch.testing.assert_close(again(x)["logits"], model(x)["logits"])
    pre = Preprocessor.from_config(config["preprocessing"])  # frames of any size → the model's input
    frames = torch.randint(0, 256, (3, 48, 40, 3), dtype=torch.uint8)
    emb = again.embed_image(pre.images(frames))
    assert emb.shape == (3, again.embed_dim) and config["preprocessing"]["modalities"] == ["image"]


def test_stacked_encoder_fuses_frames_early_and_embeds_stills(tmp_path) -> None:
    """encoder=stacked: one trunk pass per subsequence on 3K channels; order matters; a frame embeds as a still."""
    from avlearn.checkpoint import load_checkpoint, save_checkpoint

    model = create_model("odd_one_out", "test_tiny", encoder="stacked").eval()
    assert model.trunk.tower.body[0][0].in_channels == 3 * model.frames_per_subsequence
    x = torch.randn(2, 6, 3, 3, 32, 32)
    v = model.encode(x)
    assert v.shape == (2, 6, model.subsequence[0].out_features)
    assert not torch.allclose(v, model.encode(x.flip(2)))  # reversing each subsequence changes its encoding
    frame = torch.randn(4, 3, 32, 32)
    still = frame[:, None].expand(4, 3, 3, 32, 32).reshape(4, 9, 32, 32)
    torch.testing.assert_close(model.embed_image(frame), torch.nn.functional.normalize(model.trunk(still), dim=1))
    assert model.conv_features(frame).shape == (4, model.trunk.tower.out_channels)
    save_checkpoint(tmp_path / "o3", model)
    again, _ = load_checkpoint(tmp_path / "o3")
    torch.testing.assert_close(again(x)["logits"], model(x)["logits"])


@pytest.mark.parametrize("name", ["shuffle_learn", "odd_one_out"])
def test_block_maps_are_each_conv_blocks_output(name) -> None:
    """small preset: 64 px, stride-2 stem, blocks of 32-64-128 channels at 32, 16 and 8 px; the last is the tower's output."""
    model = create_model(name, "small").eval()
    frame = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = model.block_maps(frame)
        assert [tuple(m.shape) for m in maps] == [(2, 32, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8)]
        torch.testing.assert_close(maps[-1].mean(dim=(2, 3)), model.conv_features(frame))


def test_random_twins_are_seeded_and_distinct() -> None:
    """The probe's random baselines: the same seed gives the same weights, another seed other weights."""
    from avlearn.eval.probe import random_like

    model = create_model("shuffle_learn", "test_tiny")
    w = [random_like(model, s).trunk.tower.body[0][0].weight for s in (0, 0, 1)]
    torch.testing.assert_close(w[0], w[1])
    assert not torch.allclose(w[0], w[2])


def test_trunk_grid_pool_is_a_model_option(tmp_path) -> None:
    """pool=max (CaffeNet's pool5) or avg (default); set with --set pool=...; kept by checkpoints; bad values are errors."""
    from avlearn.checkpoint import load_checkpoint, save_checkpoint
    from training.tasks import get_task

    assert isinstance(create_model("shuffle_learn", "test_tiny").trunk.pool, torch.nn.AdaptiveAvgPool2d)
    for task in ("shuffle_learn", "odd_one_out"):
        model = get_task(task, {"pool": "max"}).build_model("test_tiny").eval()
        assert isinstance(model.trunk.pool, torch.nn.AdaptiveMaxPool2d) and model.model_config["pool"] == "max"
        save_checkpoint(tmp_path / task, model)
        again, config = load_checkpoint(tmp_path / task)
        assert isinstance(again.trunk.pool, torch.nn.AdaptiveMaxPool2d) and config["model"]["pool"] == "max"
    with pytest.raises(ValueError, match="pool"):
        create_model("shuffle_learn", "test_tiny", pool="median")
