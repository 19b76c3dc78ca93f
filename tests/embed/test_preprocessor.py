"""Preprocessor: frames of any size → normalised model input, waves of any length → log features."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from avlearn.embed.preprocess import Preprocessor
from avlearn.media.features import LogAudioFeatures
from avlearn.models import create_model


@pytest.fixture(scope="module")
def pre() -> Preprocessor:
    return Preprocessor.from_config(create_model("ave_net", "test_tiny").preprocessing)


def test_properties_follow_the_model() -> None:
    model = create_model("avol_net", "small")
    p = Preprocessor.from_config(model.preprocessing)
    assert p.image_size_px == (128, 128) and p.sample_rate_hz == 16000 and p.segment_sec == 1.0
    assert p.num_samples == 16000 and p.spectrogram_shape == (1, 64, 100)


def test_constant_frames_normalise_exactly(pre: Preprocessor) -> None:
    frames = np.zeros((2, 45, 77, 3), np.uint8)
    frames[0] = (10, 128, 250)
    frames[1] = 255
    x = pre.images(frames)
    assert x.shape == (2, 3, *pre.image_size_px) and x.dtype == torch.float32
    mean, std = np.array(pre.image_mean), np.array(pre.image_std)
    for i, rgb in enumerate([(10, 128, 250), (255, 255, 255)]):
        expected = (np.array(rgb) / 255.0 - mean) / std
        np.testing.assert_allclose(x[i].mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(x[i].std(dim=(1, 2)).numpy(), 0.0, atol=1e-5)


def test_resize_is_the_decoders_area_rule(pre: Preprocessor) -> None:
    """Frames of another size are resized exactly as the decoder resizes (avlearn.media.resize_frames)."""
    from avlearn.media import resize_frames

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 96, 64, 3), dtype=np.uint8)
    x = pre.images(frames)
    ref = torch.from_numpy(resize_frames(frames, pre.image_size_px)).permute(0, 3, 1, 2).float()
    back = (x * torch.tensor(pre.image_std).view(1, 3, 1, 1) + torch.tensor(pre.image_mean).view(1, 3, 1, 1)) * 255
    assert float((back - ref).abs().max()) <= 1e-3
    # area averaging anti-aliases: a downscaled noise image is much smoother than its source
    assert float(back.std()) < 0.6 * float(torch.from_numpy(frames).float().std())


def test_resize_frames_matches_the_decoders_frame(tmp_path) -> None:
    """A frame decoded at full size then resized equals (within codec colour rounding) the frame the
    decoder resized itself: both use swscale's area rule."""
    from avlearn.media import read_frames, resize_frames
    from avlearn.testing import make_tone_video

    path = make_tone_video(tmp_path / "v.mp4", seconds=1.0, size=(96, 128))
    full = read_frames(path, [0.4]).images
    small = read_frames(path, [0.4], size_px=(32, 48)).images
    diff = np.abs(resize_frames(full, (32, 48)).astype(int) - small.astype(int))
    assert diff.mean() < 3.0 and resize_frames(full, (32, 48)).shape == small.shape


def test_torch_input_and_lists_of_sizes(pre: Preprocessor) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    x = pre.images([a, b])
    assert x.shape == (2, 3, *pre.image_size_px)
    torch.testing.assert_close(x[1], pre.images(torch.from_numpy(b)[None])[0])
    torch.testing.assert_close(x[0], pre.image(a))


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((32, 32, 3), np.uint8), r"\(N, H, W, 3\)"),
        (np.zeros((1, 32, 32, 4), np.uint8), r"\(N, H, W, 3\)"),
        (np.zeros((1, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty"),
        (np.zeros((1, 0, 32, 3), np.uint8), "empty"),
        ([], "empty"),
        ("frame.jpg", "numpy array"),
    ],
)
def test_bad_frames_raise(pre: Preprocessor, frames, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pre.images(frames)


def test_audio_crop_and_pad(pre: Preprocessor) -> None:
    n = pre.num_samples
    rng = np.random.default_rng(2)
    wave = (0.1 * rng.standard_normal(n + 5000)).astype(np.float32)
    features = LogAudioFeatures(pre.audio_config)
    long = pre.audio(wave[None])
    assert long.shape == (1, *pre.spectrogram_shape)
    torch.testing.assert_close(long, features(torch.from_numpy(wave[:n])[None]))
    short = wave[: n // 3]
    padded = np.concatenate([short, np.zeros(n - len(short), np.float32)])
    torch.testing.assert_close(pre.audio(short[None]), features(torch.from_numpy(padded)[None]))
    # lists of different lengths, float64 and torch input
    batch = pre.audio([short, wave.astype(np.float64), torch.from_numpy(wave)])
    torch.testing.assert_close(batch[1], long[0])
    torch.testing.assert_close(batch[2], long[0])
    torch.testing.assert_close(pre.spectrogram(wave), long[0])


@pytest.mark.parametrize(
    ("waves", "match"),
    [
        (np.zeros(16000, np.float32), r"\(N, n\)"),
        (np.zeros((1, 2, 16000), np.float32), r"\(N, n\)"),
        (np.zeros((1, 16000), np.int16), "float"),
        (np.zeros((0, 16000), np.float32), "empty"),
        (np.full((1, 100), np.nan, np.float32), "non-finite"),
    ],
)
def test_bad_waves_raise(pre: Preprocessor, waves, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pre.audio(waves)


def test_picklable_for_dataloader_workers(pre: Preprocessor) -> None:
    clone = pickle.loads(pickle.dumps(pre))
    frames = np.random.default_rng(3).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    waves = np.random.default_rng(4).standard_normal((2, 9000)).astype(np.float32)
    torch.testing.assert_close(clone.images(frames), pre.images(frames))
    torch.testing.assert_close(clone.audio(waves), pre.audio(waves))


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="preprocessing"):
        Preprocessor.from_config({"image_size_px": [32, 32]})


def test_read_only_frames_are_accepted(pre: Preprocessor) -> None:
    data = np.random.default_rng(5).integers(0, 256, 2 * 20 * 30 * 3, dtype=np.uint8).tobytes()
    frames = np.frombuffer(data, np.uint8).reshape(2, 20, 30, 3)
    assert not frames.flags.writeable
    torch.testing.assert_close(pre.images(frames), pre.images(frames.copy()))
