"""Query inputs and how their media is decoded: the same decode path and sizes as indexed segments."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from avlearn.media import errors as media_errors
from services.errors import InvalidQuery
from services.settings import Limits


@dataclass(frozen=True)
class MediaQuery:
    """One query input: exactly one of encoded media, a video + time, a segment id, a vector."""

    data: bytes | None = None
    video: bytes | None = None
    time_sec: float = 0.0
    segment_id: int | None = None
    vector: np.ndarray | None = None

    def kind(self) -> str:
        given = [n for n, v in (("data", self.data), ("video", self.video), ("segment_id", self.segment_id), ("vector", self.vector)) if v is not None]
        if len(given) != 1:
            raise InvalidQuery("give exactly one input: encoded media bytes, a video with a time, a segment id, or a vector")
        return given[0]


class MediaDecoder:
    """Decodes query media under the limits, in-process or (``safe``) in a sandboxed child."""

    def __init__(self, limits: Limits, *, safe: bool = False, timeout_sec: float = 20.0) -> None:
        self.limits = limits
        self.safe = safe
        self.timeout_sec = timeout_sec

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.safe:
            from avlearn.media import safe_call

            return safe_call(fn, *args, path="<query>", timeout_sec=self.timeout_sec, **kwargs)
        return fn(*args, **kwargs)

    def image(self, data: bytes) -> np.ndarray:
        """Encoded image → (H, W, 3) uint8."""
        from avlearn.media import read_image

        return self._call(read_image, data, max_pixels=self.limits.max_image_pixels)

    def _probe_video(self, data: bytes, time_sec: float):
        from avlearn.media import probe

        if not math.isfinite(time_sec) or time_sec < 0:
            raise InvalidQuery(f"time_sec must be a finite number >= 0, got {time_sec}")
        info = self._call(probe, data)
        return info

    def video_frame(self, data: bytes, time_sec: float, size_px: tuple[int, int] | None = None) -> np.ndarray:
        """The frame on screen at ``time_sec`` of an encoded video → (H, W, 3) uint8, at ``size_px`` (H, W) or native size."""
        from avlearn.media import read_frames

        info = self._probe_video(data, time_sec)
        if not info.has_video:
            raise media_errors.NoVideoStream("", "the file has no video stream")
        pixels = (info.width_px or 0) * (info.height_px or 0)
        if pixels > self.limits.max_image_pixels:
            raise media_errors.MediaTooLarge(
                "", f"video frames are {info.width_px}x{info.height_px} = {pixels} pixels, over the limit of {self.limits.max_image_pixels}"
            )
        return self._call(read_frames, data, [float(time_sec)], size_px).images[0]

    def video_audio(self, data: bytes, time_sec: float, duration_sec: float, sample_rate_hz: int) -> np.ndarray:
        """``duration_sec`` of audio from ``time_sec`` of an encoded video → (n,) float32."""
        from avlearn.media import read_audio

        self._probe_video(data, time_sec)
        return self._call(read_audio, data, float(time_sec), float(duration_sec), sample_rate_hz)

    def audio(self, data: bytes, sample_rate_hz: int) -> np.ndarray:
        """An encoded audio clip (at most max_audio_sec) → (n,) float32 mono at ``sample_rate_hz``."""
        from avlearn.media import probe, read_audio

        limit = self.limits.max_audio_sec
        info = self._call(probe, data)
        if not info.has_audio:
            raise media_errors.NoAudioStream("", "the data has no audio stream")
        if info.duration_sec and info.duration_sec > limit + 0.05:
            raise InvalidQuery(f"audio is {info.duration_sec:.2f} s long, over the limit of {limit:g} s")
        wave = self._call(read_audio, data, 0.0, None, sample_rate_hz)
        if len(wave) > (limit + 0.05) * sample_rate_hz:
            raise InvalidQuery(f"audio is {len(wave) / sample_rate_hz:.2f} s long, over the limit of {limit:g} s")
        if len(wave) == 0:
            raise media_errors.CorruptMedia("", "the audio has no samples")
        return wave


def audio_windows(wave: np.ndarray, segment_samples: int) -> np.ndarray:
    """Cut (n,) audio into consecutive (W, segment_samples) windows; a short tail is kept only if it is
    at least half a window or the only one (zero-padded)."""
    n = len(wave)
    starts = list(range(0, max(n - segment_samples, 0) + 1, segment_samples))
    tail = starts[-1] + segment_samples
    if n - tail >= segment_samples // 2:
        starts.append(tail)
    out = np.zeros((len(starts), segment_samples), np.float32)
    for i, s in enumerate(starts):
        piece = wave[s : s + segment_samples]
        out[i, : len(piece)] = piece
    return out
