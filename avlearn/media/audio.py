"""Audio: ``read_audio`` (down-mixed, resampled, exact start), and the buffer the segment reader shares."""

from __future__ import annotations

import bisect

import av
import numpy as np

from avlearn.media import _base
from avlearn.media._base import (
    MediaSource,
    _audio_stream,
    _decode,
    _decoding,
    _name,
    _open,
    _origin_sec,
    _packets,
)
from avlearn.media.errors import CorruptMedia, TooShort


class _AudioBuffer:
    """Decoded audio as mono float32 at one rate, placed on the media time axis by timestamps.

    Sample i sits at ``first_sec + i / rate``. Down-mixing is FFmpeg's standard matrix
    normalised so its gains sum to 1 (the same signal on every channel keeps its
    amplitude; LFE is left out), then resampled by libswresample. A frame whose
    timestamp jumps ahead (a lost or undecodable packet, a gap) is preceded by zeros;
    one that overlaps what is held is trimmed. Chunks no segment needs any more can be
    dropped (``drop_before``) so long files decode in bounded memory.
    """

    _GAP_SEC = 0.005  # timestamp jitter below this is ignored

    def __init__(self, sample_rate_hz: int, origin: float) -> None:
        self.rate = sample_rate_hz
        self.origin = origin
        self.resampler = None
        self.key: tuple | None = None
        self.chunks: list[np.ndarray] = []
        self.starts: list[int] = []  # sample index of each chunk's first sample
        self.first_sec: float | None = None
        self.count = 0  # samples from first_sec to the end of what was pushed
        self.decoded = 0

    def push(self, frame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self.key:  # first frame, or the stream changed format mid-way
            if self.resampler is not None:
                self._take(self.resampler.resample(None))
            self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=self.rate, options={"rematrix_maxval": "1.0"})
            self.key = key
        self.decoded += 1
        self._take(self.resampler.resample(frame))

    def flush(self) -> None:
        if self.resampler is not None:
            self._take(self.resampler.resample(None))

    def _take(self, outs: list) -> None:
        for out in outs:
            # mono float planar: one plane; frombuffer + copy is much cheaper than to_ndarray's vstack
            arr = np.frombuffer(out.planes[0], dtype=np.float32, count=out.samples).copy()
            tb = out.time_base  # 1/rate after resampling; the stream's in passthrough
            t = out.pts * tb.numerator / tb.denominator - self.origin if out.pts is not None and tb is not None else None
            if self.first_sec is None:
                self.first_sec = t if t is not None else 0.0
            elif t is not None:
                shift = int(round((t - self.first_sec) * self.rate)) - self.count
                if shift > self._GAP_SEC * self.rate:
                    self._append(np.zeros(shift, np.float32))
                elif shift < -self._GAP_SEC * self.rate:
                    arr = arr[-shift:]
            if arr.shape[0]:
                self._append(arr)

    def _append(self, arr: np.ndarray) -> None:
        self.chunks.append(arr)
        self.starts.append(self.count)
        self.count += arr.shape[0]

    def end_sec(self) -> float:
        return (self.first_sec or 0.0) + self.count / self.rate

    def drop_before(self, sec: float) -> None:
        """Forget chunks that end before ``sec``."""
        if self.first_sec is None:
            return
        index = int((sec - self.first_sec) * self.rate)
        k = 0
        while k < len(self.chunks) - 1 and self.starts[k + 1] <= index:
            k += 1
        if k:
            del self.chunks[:k], self.starts[:k]

    def cut(self, start_sec: float, n: int, pad: bool, name: str) -> np.ndarray:
        """(n,) samples from ``start_sec`` on the media time axis, zero-padded where allowed."""
        first = self.first_sec if self.first_sec is not None else 0.0
        lo = int(round((start_sec - first) * self.rate))
        hi = lo + n
        out = np.zeros(n, np.float32)
        held_lo = self.starts[0] if self.starts else 0
        a, b = max(lo, held_lo), min(hi, self.count)
        if b - a < n and not pad:
            raise TooShort(name, f"audio from {start_sec:.3f} s for {n / self.rate:.3f} s has only {max(b - a, 0)} of {n} samples")
        if b > a:
            k = max(bisect.bisect_right(self.starts, a) - 1, 0)
            while k < len(self.chunks) and self.starts[k] < b:
                s = self.starts[k]
                c = self.chunks[k]
                x, y = max(a, s), min(b, s + c.shape[0])
                if y > x:
                    out[x - lo : y - lo] = c[x - s : y - s]
                k += 1
        np.clip(out, -1.0, 1.0, out=out)
        return out


def read_audio(
    source: MediaSource,
    start_sec: float = 0.0,
    duration_sec: float | None = None,
    sample_rate_hz: int = 16000,
    *,
    pad: bool = True,
) -> np.ndarray:
    """Read mono float32 audio, down-mixed from any channel layout and resampled.

    Args:
        start_sec: where to start on the media time axis.
        duration_sec: how much to read; None reads to the end.
        sample_rate_hz: output rate.
        pad: zero-pad a span that runs past either end; when False such a span raises TooShort.

    Returns:
        (round(duration_sec * sample_rate_hz),) float32 in [-1, 1].

    Raises:
        NoAudioStream, CorruptMedia, TooShort, MissingMedia.
    """
    name = _name(source)
    if sample_rate_hz <= 0:
        raise ValueError("sample_rate_hz must be positive")
    if duration_sec is not None and duration_sec < 0:
        raise ValueError("duration_sec must be >= 0")
    if not np.isfinite(start_sec):
        raise ValueError("start_sec must be finite")
    if start_sec < 0 and not pad:
        raise TooShort(name, f"start {start_sec:.3f} s precedes the media")
    with _decoding(name):
        seek = start_sec > _base.SEEK_THRESHOLD_SEC
        buf = _decode_audio(source, name, start_sec, duration_sec, sample_rate_hz, seek)
        if seek and (buf.first_sec is None or buf.first_sec > start_sec + 1.0 / sample_rate_hz):
            buf = _decode_audio(source, name, start_sec, duration_sec, sample_rate_hz, False)  # the seek overshot
        if duration_sec is None:
            duration_sec = max(0.0, buf.end_sec() - start_sec)
        n = int(round(duration_sec * sample_rate_hz))
        return buf.cut(start_sec, n, pad, name)


def _decode_audio(source: MediaSource, name: str, start_sec: float, duration_sec: float | None, rate: int, seek: bool) -> _AudioBuffer:
    with _open(source) as container:
        stream = _audio_stream(container, name)
        origin = _origin_sec(container)
        buf = _AudioBuffer(rate, origin)
        stop_sec = None if duration_sec is None else start_sec + duration_sec
        errors = 0
        if seek:
            container.seek(int((start_sec - 1.0 + origin) / stream.time_base), stream=stream, backward=True)
        for packet in _packets(container, stream):
            frames = _decode(packet)
            if frames is None:
                errors += 1
                continue
            for frame in frames:
                buf.push(frame)
            if stop_sec is not None and buf.first_sec is not None and buf.end_sec() > stop_sec + 0.1:
                break
        if buf.decoded == 0:
            raise CorruptMedia(name, f"no audio frames could be decoded ({errors} bad packets)")
        buf.flush()
    return buf
