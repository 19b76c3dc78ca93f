"""What the probe feeds a trunk: frames for a per-frame trunk, K-frame stacks for a stacked-frames trunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.eval.probe import clip_frames, embed_frames
from avlearn.models import create_model


def _index(frames: np.ndarray) -> np.ndarray:
    """The frame index encoded below the moving square of index_frames (grey level 2i; H.264 moves it by a level or two)."""
    return frames[..., 20:, :, :].astype(float).mean(axis=(-3, -2, -1)) / 2


def test_stacks_are_k_frames_gap_apart_in_order_around_each_moment(index_videos) -> None:
    frames, labels, groups, skipped = clip_frames(index_videos, size_px=(32, 32), frames_per_clip=3, stack=4, stack_gap_frames=3)
    assert frames.shape == (6, 4, 32, 32, 3) and labels == ["alpha"] * 3 + ["beta"] * 3 and len(set(groups)) == 2 and not skipped
    # moments at (i + 0.5) / 3 of a 100-frame clip: grid frames 17, 50, 83; K = 4 frames 3 apart around each
    expected = np.array([17, 50, 83])[:, None] + np.array([-4, -1, 2, 5])[None, :]
    np.testing.assert_allclose(_index(frames), np.concatenate([expected, expected]), atol=1.01)
    single, *_ = clip_frames(index_videos, size_px=(32, 32), frames_per_clip=3)
    assert single.shape == (6, 32, 32, 3)
    with pytest.raises(ValueError):
        clip_frames(index_videos, size_px=(32, 32), stack=0)


def test_stacks_near_the_ends_are_clamped_to_the_clip(index_videos) -> None:
    frames, *_ = clip_frames(index_videos, size_px=(32, 32), frames_per_clip=1, stack=3, stack_gap_frames=40)
    np.testing.assert_allclose(_index(frames[0]), [10, 50, 90], atol=1.01)  # 50 +/- 40: inside the 100 frames
    frames, *_ = clip_frames(index_videos, size_px=(32, 32), frames_per_clip=1, stack=3, stack_gap_frames=60)
    np.testing.assert_allclose(_index(frames[0]), [0, 50, 99], atol=1.01)  # 50 +/- 60: clamped to the first and last frame


def test_a_stacked_trunk_embeds_stacks_and_stills_a_frame_trunk_refuses_stacks() -> None:
    model = create_model("odd_one_out", "test_tiny", encoder="stacked").eval()
    k = model.stack_frames
    stack = torch.randn(2, k, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_image(stack), torch.nn.functional.normalize(model.trunk(stack.flatten(1, 2)), dim=1))
        still = stack[:, :1].expand(2, k, 3, 32, 32)
        torch.testing.assert_close(model.conv_features(still), model.conv_features(stack[:, 0]))  # a still is a stack of one frame
        assert not torch.allclose(model.conv_features(stack), model.conv_features(stack.flip(1)))  # order matters
        with pytest.raises(ValueError, match="stacks"):
            model.embed_image(torch.randn(2, k + 1, 3, 32, 32))
        frame_model = create_model("shuffle_learn", "test_tiny").eval()
        assert frame_model.stack_frames == 1
        with pytest.raises(ValueError):
            frame_model.embed_image(stack)
    uint8 = np.random.default_rng(0).integers(0, 256, (5, k, 32, 32, 3), dtype=np.uint8)
    feats = embed_frames(model, uint8, layer="conv", batch_size=2)
    assert feats.shape == (5, model.trunk.tower.out_channels)
