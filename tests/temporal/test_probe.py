"""The action probe's pieces: moments and stacks per clip, what each trunk is fed, pooling, the two probes, split hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.data.action_sets import LabelledSplit, world_split
from avlearn.data.spans import ClipSpan
from avlearn.eval.probe import ClipSet, clip_features, decode_clips, fit_probes, pool_moments
from avlearn.models import create_model


def _index(frames: np.ndarray) -> np.ndarray:
    """The frame index encoded below the moving square of index_frames (grey level 2i; H.264 moves it by a level or two)."""
    return frames[..., 20:, :, :].astype(float).mean(axis=(-3, -2, -1)) / 2


def _spans(root) -> list[ClipSpan]:
    from avlearn.data.sources import load_source

    return load_source(root).spans


def test_moments_and_stacks_of_each_clip(index_videos) -> None:
    clips = decode_clips(_spans(index_videos), size_px=(32, 32), moments=3, stack=4, stack_gap_frames=3)
    assert clips.frames.shape == (2, 3, 4, 32, 32, 3) and clips.labels == ["alpha", "beta"] and len(set(clips.paths)) == 2 and not clips.skipped
    # moments at (i + 0.5) / 3 of a 100-frame clip: grid frames 17, 50, 83; K = 4 frames 3 apart around each
    expected = np.array([17, 50, 83])[:, None] + np.array([-4, -1, 2, 5])[None, :]
    np.testing.assert_allclose(_index(clips.frames), np.stack([expected, expected]), atol=1.01)
    single = decode_clips(_spans(index_videos), size_px=(32, 32), moments=3)
    assert single.frames.shape == (2, 3, 32, 32, 3)
    np.testing.assert_allclose(_index(single.frames), [[16, 50, 83]] * 2, atol=1.01)  # the frames shown at 0.67, 2.0 and 3.33 s
    with pytest.raises(ValueError):
        decode_clips(_spans(index_videos), size_px=(32, 32), stack=0)


def test_stacks_near_the_ends_are_clamped_to_the_clip(index_videos) -> None:
    clips = decode_clips(_spans(index_videos), size_px=(32, 32), moments=1, stack=3, stack_gap_frames=60)
    np.testing.assert_allclose(_index(clips.frames[0, 0]), [0, 50, 99], atol=1.01)  # 50 +/- 60: clamped to the first and last frame


def test_each_trunk_takes_what_it_was_trained_on() -> None:
    stacked = create_model("odd_one_out", "test_tiny", encoder="stacked").eval()
    k = stacked.stack_frames
    stack = torch.randn(2, k, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stacked.embed_image(stack), torch.nn.functional.normalize(stacked.trunk(stack.flatten(1, 2)), dim=1))
        still = stack[:, :1].expand(2, k, 3, 32, 32)
        torch.testing.assert_close(stacked.conv_features(still), stacked.conv_features(stack[:, 0]))  # a still is a stack of one frame
        assert not torch.allclose(stacked.conv_features(stack), stacked.conv_features(stack.flip(1)))  # order matters
        with pytest.raises(ValueError, match="stacks"):
            stacked.embed_image(torch.randn(2, k + 1, 3, 32, 32))
        dynamic = create_model("odd_one_out", "test_tiny", encoder="dynamic").eval()
        assert dynamic.input_frames == k and dynamic.stack_frames == 1  # the trunk takes one image: the stack's dynamic image
        torch.testing.assert_close(dynamic.embed_image(stack), dynamic.embed_image(dynamic.dynamic_images(stack)))
        diffs = create_model("odd_one_out", "test_tiny", encoder="differences").eval()
        expected = torch.cat([stack[:, :1], stack[:, 1:] - stack[:, :-1]], dim=1).flatten(1, 2)  # first frame, then the changes
        torch.testing.assert_close(diffs.embed_image(stack), torch.nn.functional.normalize(diffs.trunk(expected), dim=1))
        torch.testing.assert_close(diffs.embed_image(stack[:, 0]), diffs.embed_image(still))  # a frame is a still: zero differences
        frames = create_model("shuffle_learn", "test_tiny").eval()
        assert frames.input_frames == 1 and create_model("odd_one_out", "test_tiny", encoder="frames").input_frames == 1
        with pytest.raises(ValueError):
            frames.embed_image(stack)


def test_clip_features_pool_mean_and_spread_over_moments() -> None:
    f = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # one clip, two moments, D = 2
    torch.testing.assert_close(pool_moments(f, "meanstd"), torch.tensor([[2.0, 0.0, 1.0, 0.0]]))
    torch.testing.assert_close(pool_moments(f, "mean"), torch.tensor([[2.0, 0.0]]))
    model = create_model("odd_one_out", "test_tiny", encoder="stacked")
    clips = ClipSet(
        np.random.default_rng(0).integers(0, 256, (5, 4, model.stack_frames, 32, 32, 3), dtype=np.uint8), ["a"] * 5, list("vwxyz"), list("vwxyz"), []
    )
    feats = clip_features(model, clips, layer="conv", batch_clips=2)
    assert feats.shape == (5, 2 * model.trunk.tower.out_channels)
    assert clip_features(model, clips, layer="embedding", pool="mean").shape == (5, model.embed_dim)
    same = ClipSet(clips.frames[:, :1].repeat(4, axis=1), clips.labels, clips.clip_ids, clips.paths, [])  # one moment repeated: no spread
    np.testing.assert_allclose(clip_features(model, same, layer="conv")[:, model.trunk.tower.out_channels :], 0.0, atol=1e-5)


def test_linear_and_knn_probes_read_labels_from_features_and_not_from_noise() -> None:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(["a", "b", "c"], 20), np.repeat(["a", "b", "c"], 10)
    centres = rng.normal(0, 1, (3, 16)) * 4
    code = {"a": 0, "b": 1, "c": 2}

    def feats(y):
        return centres[[code[c] for c in y]] + rng.normal(0, 1, (len(y), 16))

    good = fit_probes(feats(y_train), y_train, feats(y_test), y_test, k=5)
    assert good["linear"] == 1.0 and good["knn"] == 1.0
    noise = fit_probes(rng.normal(size=(60, 16)), y_train, rng.normal(size=(30, 16)), y_test, k=5)
    assert noise["linear"] < 0.7 and noise["knn"] < 0.7


def test_the_probe_never_has_a_video_on_both_sides(motion_world, tmp_path) -> None:
    split = world_split(motion_world)
    train, test = {s.path for s in split.train}, {s.path for s in split.test}
    assert train and test and not train & test and len(split.classes) == 9
    leaky = tmp_path / "test.csv"
    leaky.write_text((motion_world / "splits" / "test.csv").read_text() + (motion_world / "splits" / "train.csv").read_text().splitlines()[1] + "\n")
    (tmp_path / "videos").symlink_to(motion_world / "videos")  # test.csv paths are ../videos/...; a symlinked folder resolves to the same files
    (tmp_path / "splits").mkdir()
    leaky.rename(tmp_path / "splits" / "test.csv")
    (tmp_path / "splits" / "train.csv").write_text((motion_world / "splits" / "train.csv").read_text().replace("../videos", str(motion_world / "videos")))
    with pytest.raises(ValueError, match="in both the probe's training and test clips"):
        world_split(tmp_path)
    with pytest.raises(ValueError, match="both"):
        LabelledSplit("x", split.train[:2], split.train[1:3])
