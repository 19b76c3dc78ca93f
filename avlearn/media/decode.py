"""Decoding with PyAV: probe, frames on the video's own grid, audio, and one-pass segments.

Time origin: 0 s is the container's start time (almost always the first
presentation timestamp). All times are float seconds on that axis.

Frame-grid rule: a video's frame grid is the presentation times of its frames.
A request for time ``t`` returns the frame *on screen* at ``t``: the last frame
whose time is <= ``t`` (+1 µs tolerance), or the first frame when ``t`` precedes
it. The snapped time (that frame's own timestamp) is returned beside it, so a
caller can start audio exactly on the grid. A request later than the last
frame's time plus one frame duration raises :class:`TooShort`.
"""

from __future__ import annotations

import bisect
import heapq
import io
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from avlearn.media.errors import CorruptMedia, MediaError, MediaTooLarge, MissingMedia, NoAudioStream, NoVideoStream, TooShort

MediaSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_EPS_SEC = 1e-6
# Seek forward only when the next wanted time lies this far ahead of the decoder:
# closer than that, decoding straight on is cheaper than a seek plus a GOP re-decode.
SEEK_THRESHOLD_SEC = 3.0
# Allowed audio shortfall at the very end of a file (AAC/MP3 tails), as a fraction of a segment.
_AUDIO_TAIL_TOLERANCE = 0.02


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns from the container headers (and, if needed, a packet scan)."""

    path: str
    duration_sec: float
    has_video: bool
    fps: float | None
    time_base: Fraction | None
    width_px: int | None
    height_px: int | None
    num_frames: int | None
    has_audio: bool
    sample_rate_hz: int | None
    channels: int | None


@dataclass(frozen=True)
class Frames:
    """Frames read at requested times.

    Attributes:
        images: (N, H, W, 3) uint8 RGB, in the order of the requested times.
        times_sec: (N,) float64, each frame's own timestamp (the snapped time).
    """

    images: np.ndarray
    times_sec: np.ndarray


@dataclass(frozen=True)
class Segment:
    """One grid-aligned segment: the frame on screen at ``start_sec`` and the audio from there.

    Attributes:
        index: position k of the requested start ``k * hop_sec``.
        start_sec: the frame's own timestamp; the audio starts exactly here.
        frame: (H, W, 3) uint8 RGB.
        audio: (round(segment_sec * sample_rate_hz),) float32 mono in [-1, 1], or None when
            the file has no audio and audio was not required.
        frames: (R, H, W, 3) uint8 when more than one frame per segment was asked for, else None.
    """

    index: int
    start_sec: float
    frame: np.ndarray
    audio: np.ndarray | None
    frames: np.ndarray | None = None


def _name(source: MediaSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "") if isinstance(getattr(source, "name", None), str) else ""


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Map every failure inside a decode to a typed MediaError (a property of the file, not a bug)."""
    try:
        yield
    except MediaError:
        raise
    except MemoryError as exc:  # includes av.error.MemoryError (ENOMEM inside FFmpeg)
        raise MediaTooLarge(name, f"out of memory while decoding: {exc}") from exc
    except (av.error.FFmpegError, ValueError, ArithmeticError, LookupError, TypeError, AttributeError, RuntimeError, OSError, EOFError) as exc:
        raise CorruptMedia(name, f"decoding failed: {type(exc).__name__}: {exc}") from exc


def _open(source: MediaSource) -> av.container.InputContainer:
    """Open a path, bytes or a binary file object for reading, mapping failures to MediaError."""
    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(name):
            raise MissingMedia(name, "no such file")
        if os.path.isdir(name):
            raise MissingMedia(name, "is a directory, not a media file")
        if os.path.getsize(name) == 0:
            raise CorruptMedia(name, "file is empty (0 bytes)")
        target: object = name
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise CorruptMedia(name, "no bytes given")
        target = io.BytesIO(bytes(source))
    else:
        if hasattr(source, "seekable") and source.seekable():
            source.seek(0)  # a file object is read from its start (we may open it more than once)
        target = source
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise MissingMedia(name, "no such file") from exc
    except av.error.PermissionError as exc:
        raise MissingMedia(name, f"cannot open: {exc}") from exc
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError, EOFError) as exc:
        raise CorruptMedia(name, f"cannot open container: {exc}") from exc


def _origin_sec(container: av.container.InputContainer) -> float:
    start = container.start_time
    return float(start) / av.time_base if start is not None else 0.0


def _first_video(container):
    """The first real video stream; cover art (an attached picture, e.g. in MP3) does not count."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _video_stream(container, name: str):
    stream = _first_video(container)
    if stream is None:
        raise NoVideoStream(name, "the file has no video stream")
    if stream.codec_context is None or stream.codec_context.name is None:
        raise CorruptMedia(name, "video stream has no decodable codec")
    return stream


def _audio_stream(container, name: str):
    if not container.streams.audio:
        raise NoAudioStream(name, "the file has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None or not stream.codec_context.sample_rate:
        raise CorruptMedia(name, "audio stream has no decodable codec or sample rate")
    return stream


def _fps(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate and float(rate) > 0 else None


def _set_threads(stream, threads: int) -> None:
    if threads < 1:
        raise ValueError("threads must be >= 1")
    stream.thread_count = threads
    if threads > 1:
        stream.thread_type = "AUTO"


def probe(source: MediaSource) -> MediaInfo:
    """Read container and stream headers.

    When the container states no duration (some WebM), the streams' durations are
    used, else the packets are scanned (demuxed, not decoded) to find the last timestamp.

    Raises:
        MissingMedia, CorruptMedia: the file cannot be opened or holds no media stream.
    """
    name = _name(source)
    with _decoding(name), _open(source) as container:
        origin = _origin_sec(container)
        v = _first_video(container)
        a = container.streams.audio[0] if container.streams.audio else None
        if v is None and a is None:
            raise CorruptMedia(name, "no audio or video stream found")
        duration = float(container.duration) / av.time_base if container.duration else 0.0
        if duration <= 0.0:
            duration = max((float(s.duration * s.time_base) for s in (v, a) if s is not None and s.duration and s.time_base), default=0.0)
        if duration <= 0.0:
            duration = _scan_duration(container, origin)
        info = MediaInfo(
            path=name,
            duration_sec=duration,
            has_video=v is not None,
            fps=_fps(v) if v is not None else None,
            time_base=v.time_base if v is not None else None,
            width_px=(v.codec_context.width or None) if v is not None else None,
            height_px=(v.codec_context.height or None) if v is not None else None,
            num_frames=(v.frames or None) if v is not None else None,
            has_audio=a is not None,
            sample_rate_hz=(a.codec_context.sample_rate or None) if a is not None else None,
            channels=(a.codec_context.channels or None) if a is not None else None,
        )
    return info


def _scan_duration(container, origin: float) -> float:
    end = 0.0
    for packet in _packets(container):
        if packet.pts is None or packet.time_base is None:
            continue
        t = float(packet.pts * packet.time_base) + float((packet.duration or 0) * packet.time_base)
        end = max(end, t - origin)
    return end


def _packets(container, *streams) -> Iterator:
    """Demux packets of ``streams`` (all when none given); a demuxer error ends the stream, like EOF.

    A truncated or garbled tail thus yields what precedes it; callers decide whether
    what was decoded suffices (TooShort / CorruptMedia otherwise).
    """
    it = container.demux(*streams)
    while True:
        try:
            packet = next(it)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError, EOFError):
            return
        yield packet  # the last one per stream is empty: decoding it drains the decoder


def _decode(packet) -> list | None:
    """Frames from one packet, or None when the packet cannot be decoded (counted by the caller)."""
    try:
        return packet.decode()
    except av.error.FFmpegError:
        return None


class _FrameClock:
    """Presentation time of decoded video frames, like FFmpeg's ``best_effort_timestamp``.

    Uses the frame's pts unless pts values have gone backwards more often than dts
    values (packed B-frames in AVI, broken muxers); frames with neither get the
    previous time plus one frame duration.
    """

    def __init__(self, origin: float, frame_dur: float) -> None:
        self.origin = origin
        self.frame_dur = frame_dur
        self.reset()

    def reset(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.last_t: float | None = None

    @property
    def using_dts(self) -> bool:
        return self.faulty_pts > self.faulty_dts

    def time(self, frame) -> float:
        pts, dts, tb = frame.pts, frame.dts, frame.time_base
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        best = pts if pts is not None and (dts is None or not self.using_dts) else dts
        if best is None or tb is None:
            t = 0.0 if self.last_t is None else self.last_t + self.frame_dur
        else:
            t = best * tb.numerator / tb.denominator - self.origin
        self.last_t = t
        return t

    def retime(self, prev, prev_t: float, t: float) -> float:
        """The previous frame's time, corrected by its dts when the clock just switched to dts."""
        if t <= prev_t and self.using_dts and prev.dts is not None and prev.time_base is not None:
            alt = float(prev.dts * prev.time_base) - self.origin
            if alt < t:
                return alt
        return prev_t


def _to_rgb(frame, size_px: tuple[int, int] | None) -> np.ndarray:
    """Convert one decoded frame to (H, W, 3) uint8 RGB, resized to (height, width) when given."""
    if size_px is None:
        return frame.to_ndarray(format="rgb24")
    height, width = size_px
    if (frame.height, frame.width) == (height, width):
        return frame.to_ndarray(format="rgb24")
    # resize first, in the decoder's own pixel format, with area averaging (anti-aliased when
    # shrinking), then convert the small frame: ~3x cheaper than a scaling RGB conversion
    return frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray(format="rgb24")


def _check_size(size_px: tuple[int, int] | None) -> None:
    if size_px is not None and (len(size_px) != 2 or int(size_px[0]) < 1 or int(size_px[1]) < 1):
        raise ValueError(f"size_px must be (height, width) with positive values, got {size_px!r}")


def read_frames(
    source: MediaSource,
    times_sec: Sequence[float],
    size_px: tuple[int, int] | None = None,
    *,
    threads: int = 1,
) -> Frames:
    """Read the frames on screen at ``times_sec`` (see the module's frame-grid rule).

    One decode pass per call: times are visited in sorted order; the decoder seeks
    only when the next wanted time is more than ``SEEK_THRESHOLD_SEC`` ahead (a seek
    that lands past the wanted time falls back to decoding from the start).
    Colour conversion (and resizing) runs only for frames that are kept.

    Args:
        times_sec: wanted times, any order, repeats allowed.
        size_px: (height, width) of the output, or None for the native size.
        threads: decoder threads (1 suits process-level parallelism).

    Returns:
        Frames with images (N, H, W, 3) uint8 and their own timestamps (N,).

    Raises:
        NoVideoStream, CorruptMedia, TooShort (a time past the last frame), MissingMedia.
    """
    name = _name(source)
    _check_size(size_px)
    wanted = np.asarray(times_sec, dtype=np.float64).reshape(-1)
    if wanted.size == 0:
        h, w = size_px if size_px is not None else (0, 0)
        return Frames(np.zeros((0, h, w, 3), np.uint8), np.zeros(0))
    if np.any(~np.isfinite(wanted)):
        raise ValueError("times_sec must be finite")
    order = np.argsort(wanted, kind="stable")
    images: list[np.ndarray | None] = [None] * wanted.size
    snapped = np.zeros(wanted.size)
    with _decoding(name), _open(source) as container:
        stream = _video_stream(container, name)
        _set_threads(stream, threads)
        origin = _origin_sec(container)
        frame_dur = 1.0 / (_fps(stream) or 25.0)
        clock = _FrameClock(origin, frame_dur)
        state = {"pos": 0, "decoded": 0, "errors": 0}
        seeking = True

        def resolve(frame, t: float) -> None:
            pos = state["pos"]
            target = wanted[order[pos]]
            rgb = _to_rgb(frame, size_px)
            while pos < len(order) and wanted[order[pos]] == target:
                images[order[pos]] = rgb
                snapped[order[pos]] = t
                pos += 1
            state["pos"] = pos

        def frames_from(seek_to: float | None) -> Iterator:
            if seek_to is not None:
                container.seek(int((seek_to + origin) / stream.time_base), stream=stream, backward=True, any_frame=False)
                clock.reset()
            for packet in _packets(container, stream):
                frames = _decode(packet)
                if frames is None:
                    state["errors"] += 1
                    continue
                yield from frames

        def pending() -> float | None:
            return wanted[order[state["pos"]]] if state["pos"] < len(order) else None

        first_target = wanted[order[0]]
        sought_for = first_target if first_target > SEEK_THRESHOLD_SEC else None
        gen = frames_from(sought_for)
        just_sought = first_target > SEEK_THRESHOLD_SEC
        prev, prev_t = None, None
        while state["pos"] < len(order):
            frame = next(gen, None)
            if frame is None:
                break
            state["decoded"] += 1
            t = clock.time(frame)
            if just_sought:
                just_sought = False
                if t > pending() + _EPS_SEC:  # the seek overshot: decode from the start, never seek again
                    gen.close()
                    gen = frames_from(0.0)
                    prev, prev_t, seeking = None, None, False
                    continue
            if prev is not None:
                prev_t = clock.retime(prev, prev_t, t)
            while pending() is not None and t > pending() + _EPS_SEC:
                if prev is not None:
                    resolve(prev, prev_t)
                else:
                    resolve(frame, t)  # the time precedes the first frame: the first frame is on screen
            prev, prev_t = frame, t
            target = pending()
            # Seek at most once per wanted time: a seek lands on the keyframe before the target,
            # which may still lie far behind it (long GOPs); seeking again would loop forever.
            if seeking and target is not None and target - t > SEEK_THRESHOLD_SEC and target != sought_for:
                sought_for = target
                gen.close()
                gen = frames_from(target)
                just_sought = True
                prev, prev_t = None, None
        gen.close()
        if state["decoded"] == 0:
            raise CorruptMedia(name, f"no video frames could be decoded ({state['errors']} bad packets)")
        while pending() is not None and prev is not None and pending() <= prev_t + frame_dur + _EPS_SEC:
            resolve(prev, prev_t)
        if pending() is not None:
            last = f"{prev_t:.3f}" if prev_t is not None else "none"
            raise TooShort(name, f"no frame at {pending():.3f} s (last frame at {last} s)")
    return Frames(np.stack(images), snapped)  # type: ignore[arg-type]


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
        seek = start_sec > SEEK_THRESHOLD_SEC
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


def read_segments(
    source: MediaSource,
    *,
    size_px: tuple[int, int] | None,
    sample_rate_hz: int,
    segment_sec: float = 1.0,
    hop_sec: float = 1.0,
    start_sec: float = 0.0,
    end_sec: float | None = None,
    require_audio: bool = True,
    frames_per_segment: int = 1,
    threads: int = 1,
) -> list[Segment]:
    """Cut a file into grid-aligned segments in one demux pass over video and audio.

    Segment k is wanted at ``start_sec + k * hop_sec``; its frame is the frame on
    screen then (the frame-grid rule) and its audio starts at that frame's own
    timestamp, so every audio start lies on the frame grid. Segments whose audio
    would run past the end of the media are dropped (a 2% tail shortfall is
    zero-padded); without audio, segments must end within the video. Audio is cut
    as soon as it is decoded, so memory stays bounded on long files.

    Args:
        size_px: (height, width) of frames, or None for native size.
        sample_rate_hz: audio output rate (mono float32).
        end_sec: last time a segment may *end* at; None means the end of the media.
        require_audio: raise NoAudioStream when the file has none; when False such
            files give segments with ``audio=None``.
        frames_per_segment: R; when > 1 each segment also carries ``frames`` (R, H, W, 3),
            the frames on screen at ``start + j * segment_sec / R`` for j < R (``frame`` = frames[0]).

    Raises:
        NoVideoStream, NoAudioStream, CorruptMedia, MissingMedia.
    """
    name = _name(source)
    _check_size(size_px)
    if frames_per_segment < 1:
        raise ValueError("frames_per_segment must be >= 1")
    if not (segment_sec > 0 and hop_sec > 0 and sample_rate_hz > 0):
        raise ValueError("segment_sec, hop_sec and sample_rate_hz must be positive")
    n_audio = int(round(segment_sec * sample_rate_hz))
    step_sec = segment_sec / frames_per_segment
    with _decoding(name), _open(source) as container:
        vstream = _video_stream(container, name)
        _set_threads(vstream, threads)
        astream = container.streams.audio[0] if container.streams.audio else None
        if astream is not None and not astream.codec_context.sample_rate:
            astream = None
        if astream is None and require_audio:
            raise NoAudioStream(name, "the file has no audio stream")
        origin = _origin_sec(container)
        frame_dur = 1.0 / (_fps(vstream) or 25.0)
        clock = _FrameClock(origin, frame_dur)
        buf = _AudioBuffer(sample_rate_hz, origin) if astream is not None else None
        # picked[k][j] = (frame time, rgb); targets are visited in time order through a heap
        picked: dict[int, dict[int, tuple[float, np.ndarray]]] = {}
        audio_of: dict[int, np.ndarray | None] = {}  # cut audio per segment (None: dropped)
        heap: list[tuple[float, int, int]] = []
        state = {"next_k": 0, "ready_k": 0}
        converted: list = [None, None]  # (frame, rgb) of the last conversion

        def add_next_segment() -> None:
            t0 = start_sec + state["next_k"] * hop_sec
            if end_sec is not None and t0 + segment_sec > end_sec + _EPS_SEC:
                return
            for j in range(frames_per_segment):
                heapq.heappush(heap, (t0 + j * step_sec, state["next_k"], j))
            state["next_k"] += 1

        def take(frame, t: float) -> None:
            _, k, j = heapq.heappop(heap)
            if converted[0] is not frame:
                converted[0], converted[1] = frame, _to_rgb(frame, size_px)
            picked.setdefault(k, {})[j] = (t, converted[1])
            if j == 0:
                add_next_segment()

        def cut_ready(final: bool, keep_from: float | None) -> None:
            """Cut the audio of every complete segment the buffer covers; forget older audio."""
            while state["ready_k"] in picked and len(picked[state["ready_k"]]) == frames_per_segment:
                k = state["ready_k"]
                t = picked[k][0][0]
                short_sec = (t + segment_sec) - buf.end_sec()  # type: ignore[union-attr]
                if short_sec > _EPS_SEC and not final:
                    break
                ok = short_sec <= _AUDIO_TAIL_TOLERANCE * segment_sec
                audio_of[k] = buf.cut(t, n_audio, True, name) if ok else None  # type: ignore[union-attr]
                state["ready_k"] += 1
            if keep_from is not None:
                k = state["ready_k"]
                if k in picked:
                    keep_from = min(keep_from, picked[k][0][0])
                buf.drop_before(keep_from - 1.0)  # type: ignore[union-attr]

        add_next_segment()
        prev, prev_t = None, None
        v_decoded = v_errors = a_errors = 0

        def on_video(frame) -> None:
            nonlocal prev, prev_t, v_decoded
            v_decoded += 1
            t = clock.time(frame)
            if prev is not None:
                prev_t = clock.retime(prev, prev_t, t)
            while heap and t > heap[0][0] + _EPS_SEC:
                take(prev, prev_t) if prev is not None else take(frame, t)
            prev, prev_t = frame, t

        streams = [vstream] + ([astream] if astream is not None else [])
        for packet in _packets(container, *streams):
            is_video = packet.stream.type == "video"
            if is_video and not heap:
                continue
            frames = _decode(packet)
            if frames is None:
                if is_video:
                    v_errors += 1
                else:
                    a_errors += 1
                continue
            for frame in frames:
                if is_video:
                    on_video(frame)
                else:
                    buf.push(frame)  # type: ignore[union-attr]
            if buf is not None and not is_video:
                cut_ready(False, prev_t if heap else None)
            if not heap and (buf is None or (end_sec is not None and buf.end_sec() > end_sec + 0.1)):
                break
        if v_decoded == 0:
            raise CorruptMedia(name, f"no video frames could be decoded ({v_errors} bad packets)")
        while heap and prev is not None and heap[0][0] <= prev_t + frame_dur + _EPS_SEC:
            take(prev, prev_t)
        if buf is not None:
            if buf.decoded == 0:
                if require_audio:
                    raise NoAudioStream(name, f"the audio stream could not be decoded ({a_errors} bad packets)")
                buf = None
            else:
                buf.flush()
                cut_ready(True, None)
    segments: list[Segment] = []
    video_end = (prev_t or 0.0) + frame_dur
    for index in sorted(picked):
        got = picked[index]
        if len(got) < frames_per_segment:
            continue
        t, rgb = got[0]
        stack = np.stack([got[j][1] for j in range(frames_per_segment)]) if frames_per_segment > 1 else None
        if buf is None:
            if t + segment_sec <= video_end + _EPS_SEC:
                segments.append(Segment(index, t, rgb, None, stack))
            continue
        audio = audio_of.get(index)
        if audio is not None:
            segments.append(Segment(index, t, rgb, audio, stack))
    return segments


def read_image(data: bytes | bytearray | memoryview | str | os.PathLike, *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Decode an encoded still image (JPEG, PNG, ...) to (H, W, 3) uint8 RGB, upright per its EXIF orientation.

    Uses Pillow (not a video decoder). Raises CorruptMedia for undecodable data,
    MissingMedia for a missing path and MediaTooLarge past ``max_pixels`` (checked
    from the header, before decoding).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    is_bytes = isinstance(data, (bytes, bytearray, memoryview))
    name = "" if is_bytes else os.fspath(data)
    if is_bytes and len(data) == 0:
        raise CorruptMedia(name, "no bytes given")
    try:
        src = io.BytesIO(bytes(data)) if is_bytes else name
        with warnings.catch_warnings():  # we apply our own pixel limit just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise MediaTooLarge(name, f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
            upright = ImageOps.exif_transpose(img)
            return np.asarray(upright.convert("RGB"))
    except FileNotFoundError as exc:
        raise MissingMedia(name, "no such file") from exc
    except IsADirectoryError as exc:
        raise MissingMedia(name, "is a directory, not an image") from exc
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own limit, hit while reading the header
        raise MediaTooLarge(name, f"image is too large: {exc}") from exc
    except MemoryError as exc:
        raise MediaTooLarge(name, f"out of memory while decoding the image: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError, KeyError, ZeroDivisionError) as exc:
        raise CorruptMedia(name, f"cannot decode image: {type(exc).__name__}: {exc}") from exc
