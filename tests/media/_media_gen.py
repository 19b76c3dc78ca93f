"""Helpers for the avlearn.media tests: generated signals with a recoverable ground truth."""

from __future__ import annotations

import numpy as np


def gray_frames(n: int, size: tuple[int, int] = (32, 48)):
    """Frame i is flat gray (3 * i) % 256: the frame index is recoverable from its pixels."""
    h, w = size
    return (np.full((h, w, 3), (3 * i) % 256, np.uint8) for i in range(n))


def sine(freq_hz: float, seconds: float, rate_hz: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def clicks(times_sec, seconds: float, rate_hz: int, amp: float = 0.9) -> np.ndarray:
    """Silence with a one-sample click at each time."""
    wave = np.zeros(int(round(seconds * rate_hz)), np.float32)
    for t in times_sec:
        wave[int(round(t * rate_hz))] = amp
    return wave


def expected_index(t: float, fps: float, n: int) -> int:
    """The frame on screen at t for frames at i / fps (the frame-grid rule)."""
    return int(min(max(np.floor(t * fps + 1e-6), 0), n - 1))


def index_of(image: np.ndarray) -> int:
    """Frame index from a gray_frames image (valid below 86 frames; lossy codecs are off by <= 2 levels)."""
    return int(round(float(image.mean()) / 3))


def tone_peak(wave: np.ndarray, rate_hz: int) -> tuple[float, float]:
    """(frequency in Hz, amplitude) of the strongest sinusoid in ``wave`` (Hann-windowed FFT)."""
    win = np.hanning(wave.shape[0])
    spec = np.abs(np.fft.rfft(wave * win))
    k = int(np.argmax(spec))
    return k * rate_hz / wave.shape[0], 2.0 * spec[k] / win.sum()
