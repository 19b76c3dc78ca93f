"""Audio features with torchaudio: log-spectrogram (the paper's) and log-mel (CPU-friendly).

Shapes: a waveform batch (B, n) float32 mono → features (B, 1, F, T).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torchaudio


@dataclass(frozen=True)
class AudioFeatureConfig:
    """How a 1-D waveform becomes a (1, F, T) log time-frequency image.

    Attributes:
        kind: "spectrogram" (log power STFT) or "mel" (log power mel bank).
        sample_rate_hz: input rate.
        duration_sec: input length; T = round(duration_sec / hop_sec).
        win_sec, hop_sec: STFT window and hop.
        n_fft: FFT size; F = n_fft // 2 + 1 for "spectrogram".
        n_mels: F for "mel".
        log_eps: added before the log.
    """

    kind: Literal["spectrogram", "mel"] = "spectrogram"
    sample_rate_hz: int = 48000
    duration_sec: float = 1.0
    win_sec: float = 0.010
    hop_sec: float = 0.005
    n_fft: int = 512
    n_mels: int = 64
    log_eps: float = 1e-6

    @property
    def num_samples(self) -> int:
        return int(round(self.duration_sec * self.sample_rate_hz))

    @property
    def win_length(self) -> int:
        return int(round(self.win_sec * self.sample_rate_hz))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_sec * self.sample_rate_hz))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(1, F, T) of one example's features."""
        freq = self.n_fft // 2 + 1 if self.kind == "spectrogram" else self.n_mels
        return (1, freq, int(round(self.duration_sec / self.hop_sec)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioFeatureConfig:
        return cls(**d)


# The published setup: 48 kHz, 1 s → 257 × 200 log-spectrogram (10 ms window, 5 ms hop).
PAPER_AUDIO = AudioFeatureConfig()
# CPU preset: 16 kHz, 1 s → 64 × 100 log-mel (25 ms window, 10 ms hop).
SMALL_AUDIO = AudioFeatureConfig(kind="mel", sample_rate_hz=16000, win_sec=0.025, hop_sec=0.010, n_fft=512, n_mels=64)


class LogAudioFeatures(torch.nn.Module):
    """Waveform (B, n) or (n,) → log features (B, 1, F, T); T is cropped/padded to the config's T."""

    def __init__(self, config: AudioFeatureConfig) -> None:
        super().__init__()
        self.config = config
        common = dict(n_fft=config.n_fft, win_length=config.win_length, hop_length=config.hop_length, power=2.0, center=True, pad_mode="constant")
        if config.kind == "spectrogram":
            self.transform = torchaudio.transforms.Spectrogram(**common)
        elif config.kind == "mel":
            self.transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=config.sample_rate_hz, n_mels=config.n_mels, norm="slaney", mel_scale="slaney", **common
            )
        else:
            raise ValueError(f"unknown audio feature kind {config.kind!r}")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() != 2:
            raise ValueError(f"expected a waveform batch (B, n), got shape {tuple(wave.shape)}")
        spec = self.transform(wave.float())  # (B, F, T')
        t = self.config.shape[2]
        if spec.shape[-1] >= t:
            spec = spec[..., :t]
        else:
            spec = torch.nn.functional.pad(spec, (0, t - spec.shape[-1]))
        return torch.log(spec + self.config.log_eps)[:, None]
