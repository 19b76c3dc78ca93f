"""Log audio features: shapes of the presets and parity with librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from avlearn.media.features import PAPER_AUDIO, SMALL_AUDIO, AudioFeatureConfig, LogAudioFeatures


def _noisy_tones(rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    wave = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t) + 0.05 * rng.standard_normal(t.shape)
    return wave.astype(np.float32)


@pytest.mark.parametrize("config,shape", [(PAPER_AUDIO, (1, 257, 200)), (SMALL_AUDIO, (1, 64, 100))])
def test_preset_shapes(config, shape):
    assert config.shape == shape
    feats = LogAudioFeatures(config)(torch.from_numpy(np.stack([_noisy_tones(config.sample_rate_hz)] * 2)))
    assert tuple(feats.shape) == (2, *shape) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    one = LogAudioFeatures(config)(torch.from_numpy(_noisy_tones(config.sample_rate_hz)))
    assert tuple(one.shape) == (1, *shape)


def test_short_and_long_inputs_are_cropped_or_padded():
    feats = LogAudioFeatures(SMALL_AUDIO)
    assert tuple(feats(torch.zeros(1, 8000)).shape) == (1, 1, 64, 100)
    assert tuple(feats(torch.zeros(1, 32000)).shape) == (1, 1, 64, 100)
    with pytest.raises(ValueError):
        feats(torch.zeros(1, 1, 16000))


def test_config_round_trip():
    assert AudioFeatureConfig.from_dict(SMALL_AUDIO.to_dict()) == SMALL_AUDIO
    assert SMALL_AUDIO.num_samples == 16000 and PAPER_AUDIO.num_samples == 48000


def _librosa_power(config: AudioFeatureConfig, wave: np.ndarray) -> np.ndarray:
    common = dict(n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length, window="hann", center=True, pad_mode="constant")
    if config.kind == "spectrogram":
        return np.abs(librosa.stft(wave, **common)) ** 2
    return librosa.feature.melspectrogram(y=wave, sr=config.sample_rate_hz, power=2.0, n_mels=config.n_mels, htk=False, norm="slaney", **common)


@pytest.mark.parametrize("config", [PAPER_AUDIO, SMALL_AUDIO], ids=["paper", "small"])
def test_parity_with_librosa(config):
    wave = _noisy_tones(config.sample_rate_hz)
    ours = LogAudioFeatures(config)(torch.from_numpy(wave))[0, 0].numpy().astype(np.float64)
    power = _librosa_power(config, wave.astype(np.float64))[:, : config.shape[2]]
    ref = np.log(power + config.log_eps)
    assert ours.shape == ref.shape
    strong = power > 1e-3  # away from the log's floor, where float32 rounding dominates
    assert strong.mean() > 0.5
    assert np.abs(ours - ref)[strong].max() < 1e-3
    assert np.abs(ours - ref).mean() < 1e-2
