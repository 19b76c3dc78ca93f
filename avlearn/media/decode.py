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

import heapq
import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterator, Sequence, Union

import av
import numpy as np

from avlearn.media.errors import CorruptMedia, MediaError, MissingMedia, NoAudioStream, NoVideoStream, TooShort

MediaSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

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
    return ""


def _open(source: MediaSource) -> av.container.InputContainer:
    """Open a path, bytes or a binary file object for reading, mapping failures to MediaError."""
    name = _name(source)
    if name and not os.path.exists(name):
        raise MissingMedia(name, "no such file")
    if name and os.path.getsize(name) == 0:
        raise CorruptMedia(name, "file is empty (0 bytes)")
    target = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) == 0:
        raise CorruptMedia(name, "no bytes given")
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise MissingMedia(name, "no such file") from exc
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise CorruptMedia(name, f"cannot open container: {exc}") from exc


def _origin_sec(container: av.container.InputContainer) -> float:
    start = container.start_time
    return float(start) / av.time_base if start is not None else 0.0


def _video_stream(container, name: str):
    if not container.streams.video:
        raise NoVideoStream(name, "the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name is None:
        raise CorruptMedia(name, "video stream has no decodable codec")
    return stream


def _audio_stream(container, name: str):
    if not container.streams.audio:
        raise NoAudioStream(name, "the file has no audio stream")
    return container.streams.audio[0]


def _fps(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def probe(source: MediaSource) -> MediaInfo:
    """Read container and stream headers.

    When the container states no duration (some WebM), the packets are scanned
    (demuxed, not decoded) to find the last timestamp.

    Raises:
        MissingMedia, CorruptMedia: the file cannot be opened or holds no media stream.
    """
    name = _name(source)
    with _open(source) as container:
        origin = _origin_sec(container)
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        if v is None and a is None:
            raise CorruptMedia(name, "no audio or video stream found")
        duration = float(container.duration) / av.time_base if container.duration else 0.0  # type: ignore[attr-defined]
        if duration <= 0.0:
            duration = _scan_duration(container, origin)
        info = MediaInfo(
            path=name,
            duration_sec=duration,
            has_video=v is not None,
            fps=_fps(v) if v is not None else None,
            time_base=v.time_base if v is not None else None,
            width_px=v.codec_context.width if v is not None else None,
            height_px=v.codec_context.height if v is not None else None,
            num_frames=(v.frames or None) if v is not None else None,
            has_audio=a is not None,
            sample_rate_hz=a.codec_context.sample_rate if a is not None else None,
            channels=a.codec_context.channels if a is not None else None,
        )
    return info


def _scan_duration(container, origin: float) -> float:
    end = 0.0
    try:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            t = float(packet.pts * packet.time_base) + float((packet.duration or 0) * packet.time_base)
            end = max(end, t - origin)
    except av.error.FFmpegError:
        pass
    return end


def _frame_time(frame, origin: float, last: float | None, frame_dur: float) -> float:
    if frame.pts is not None and frame.time is not None:
        return float(frame.time) - origin
    return 0.0 if last is None else last + frame_dur


def _to_rgb(frame, size_px: tuple[int, int] | None) -> np.ndarray:
    """Convert one decoded frame to (H, W, 3) uint8 RGB, resized to (height, width) when given."""
    if size_px is None:
        return frame.to_ndarray(format="rgb24")
    height, width = size_px
    return frame.to_ndarray(format="rgb24", width=width, height=height)


def _decode_errors_ok(name: str, errors: int, decoded: int, what: str) -> None:
    if decoded == 0:
        raise CorruptMedia(name, f"no {what} could be decoded ({errors} bad packets)")


def read_frames(
    source: MediaSource,
    times_sec: Sequence[float],
    size_px: tuple[int, int] | None = None,
    *,
    threads: int = 1,
) -> Frames:
    """Read the frames on screen at ``times_sec`` (see the module's frame-grid rule).

    One decode pass per call: times are visited in sorted order; the decoder seeks
    only when the next wanted time is more than ``SEEK_THRESHOLD_SEC`` ahead.
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
    wanted = np.asarray(times_sec, dtype=np.float64)
    if wanted.size == 0:
        h, w = size_px if size_px is not None else (0, 0)
        return Frames(np.zeros((0, h, w, 3), np.uint8), np.zeros(0))
    if np.any(~np.isfinite(wanted)):
        raise ValueError("times_sec must be finite")
    order = np.argsort(wanted, kind="stable")
    images: list[np.ndarray | None] = [None] * wanted.size
    snapped = np.zeros(wanted.size)
    with _open(source) as container:
        stream = _video_stream(container, name)
        stream.thread_count = threads
        origin = _origin_sec(container)
        fps = _fps(stream) or 25.0
        frame_dur = 1.0 / fps
        pos = 0  # next index into `order`
        prev, prev_t = None, None
        decoded = errors = 0

        def resolve(frame, t: float) -> None:
            nonlocal pos
            target = wanted[order[pos]]
            rgb = _to_rgb(frame, size_px)
            while pos < len(order) and wanted[order[pos]] == target:
                images[order[pos]] = rgb
                snapped[order[pos]] = t
                pos += 1

        def frames_from(seek_to: float | None) -> Iterator:
            nonlocal errors
            if seek_to is not None:
                container.seek(int((seek_to + origin) / stream.time_base), stream=stream, backward=True, any_frame=False)
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.error.FFmpegError:
                    errors += 1

        first_target = wanted[order[0]]
        gen = frames_from(first_target if first_target > SEEK_THRESHOLD_SEC else None)
        while pos < len(order):
            frame = next(gen, None)
            if frame is None:
                break
            decoded += 1
            t = _frame_time(frame, origin, prev_t, frame_dur)
            while pos < len(order) and t > wanted[order[pos]] + _EPS_SEC:
                resolve(prev if prev is not None else frame, prev_t if prev is not None else t)
            prev, prev_t = frame, t
            if pos < len(order) and wanted[order[pos]] - t > SEEK_THRESHOLD_SEC:
                gen = frames_from(wanted[order[pos]])
                prev, prev_t = None, None
        _decode_errors_ok(name, errors, decoded, "video frames")
        while pos < len(order) and prev is not None and wanted[order[pos]] <= prev_t + frame_dur + _EPS_SEC:
            resolve(prev, prev_t)
        if pos < len(order):
            last = f"{prev_t:.3f}" if prev_t is not None else "none"
            raise TooShort(name, f"no frame at {wanted[order[pos]]:.3f} s (last frame at {last} s)")
    return Frames(np.stack(images), snapped)  # type: ignore[arg-type]


class _AudioBuffer:
    """Decoded audio resampled to mono float32 at a fixed rate, with the time of its first sample."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.rate = sample_rate_hz
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=sample_rate_hz)
        self.chunks: list[np.ndarray] = []
        self.first_sec: float | None = None
        self.count = 0

    def push(self, frame, origin: float) -> None:
        if self.first_sec is None:
            self.first_sec = (float(frame.time) - origin) if frame.time is not None else 0.0
        for out in self.resampler.resample(frame):
            arr = out.to_ndarray()[0]
            self.chunks.append(arr)
            self.count += arr.shape[0]

    def flush(self) -> None:
        for out in self.resampler.resample(None):
            arr = out.to_ndarray()[0]
            self.chunks.append(arr)
            self.count += arr.shape[0]

    def end_sec(self) -> float:
        return (self.first_sec or 0.0) + self.count / self.rate

    def array(self) -> np.ndarray:
        return np.concatenate(self.chunks).astype(np.float32, copy=False) if self.chunks else np.zeros(0, np.float32)

    def cut(self, samples: np.ndarray, start_sec: float, n: int, pad: bool, name: str) -> np.ndarray:
        """Samples [start, start + n) on the media time axis, zero-padded where allowed."""
        first = self.first_sec or 0.0
        offset = int(round((start_sec - first) * self.rate))
        lead = max(0, -offset)
        piece = samples[max(0, offset) : max(0, offset + n)]
        out = np.zeros(n, np.float32)
        available = min(n - lead, piece.shape[0]) if n > lead else 0
        if available < n and not pad:
            raise TooShort(name, f"audio from {start_sec:.3f} s for {n / self.rate:.3f} s has only {max(available, 0)} of {n} samples")
        if available > 0:
            out[lead : lead + available] = piece[:available]
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
    if start_sec < 0 and not pad:
        raise TooShort(name, f"start {start_sec:.3f} s precedes the media")
    with _open(source) as container:
        stream = _audio_stream(container, name)
        origin = _origin_sec(container)
        buf = _AudioBuffer(sample_rate_hz)
        stop_sec = None if duration_sec is None else start_sec + duration_sec
        decoded = errors = 0
        if start_sec > SEEK_THRESHOLD_SEC:
            container.seek(int((start_sec - 1.0 + origin) / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                errors += 1
                continue
            for frame in frames:
                decoded += 1
                buf.push(frame, origin)
            if stop_sec is not None and buf.first_sec is not None and buf.end_sec() > stop_sec + 0.1:
                break
        _decode_errors_ok(name, errors, decoded, "audio frames")
        buf.flush()
        samples = buf.array()
    if duration_sec is None:
        duration_sec = max(0.0, buf.end_sec() - start_sec)
    n = int(round(duration_sec * sample_rate_hz))
    return buf.cut(samples, start_sec, n, pad, name)


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
    zero-padded).

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
    if frames_per_segment < 1:
        raise ValueError("frames_per_segment must be >= 1")
    n_audio = int(round(segment_sec * sample_rate_hz))
    step_sec = segment_sec / frames_per_segment
    with _open(source) as container:
        vstream = _video_stream(container, name)
        vstream.thread_count = threads
        astream = container.streams.audio[0] if container.streams.audio else None
        if astream is None and require_audio:
            raise NoAudioStream(name, "the file has no audio stream")
        origin = _origin_sec(container)
        frame_dur = 1.0 / (_fps(vstream) or 25.0)
        buf = _AudioBuffer(sample_rate_hz) if astream is not None else None
        # picked[k][j] = (frame time, rgb); targets are visited in time order through a heap
        picked: dict[int, dict[int, tuple[float, np.ndarray]]] = {}
        heap: list[tuple[float, int, int]] = []
        next_k = 0
        exhausted = False

        def add_next_segment() -> None:
            nonlocal next_k, exhausted
            t0 = start_sec + next_k * hop_sec
            if end_sec is not None and t0 + segment_sec > end_sec + _EPS_SEC:
                exhausted = True
                return
            for j in range(frames_per_segment):
                heapq.heappush(heap, (t0 + j * step_sec, next_k, j))
            next_k += 1

        converted: tuple[object, np.ndarray] | None = None

        def take(frame, t: float) -> None:
            nonlocal converted
            _, k, j = heapq.heappop(heap)
            if converted is None or converted[0] is not frame:
                converted = (frame, _to_rgb(frame, size_px))
            picked.setdefault(k, {})[j] = (t, converted[1])
            if j == 0:
                add_next_segment()

        add_next_segment()
        prev, prev_t = None, None
        v_decoded = v_errors = a_decoded = a_errors = 0
        streams = [vstream] + ([astream] if astream is not None else [])
        for packet in container.demux(*streams):
            is_video = packet.stream.type == "video"
            video_done = not heap
            if is_video and video_done:
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                if is_video:
                    v_errors += 1
                else:
                    a_errors += 1
                continue
            for frame in frames:
                if not is_video:
                    a_decoded += 1
                    buf.push(frame, origin)  # type: ignore[union-attr]
                    continue
                v_decoded += 1
                t = _frame_time(frame, origin, prev_t, frame_dur)
                while heap and t > heap[0][0] + _EPS_SEC:
                    take(prev, prev_t) if prev is not None else take(frame, t)
                prev, prev_t = frame, t
            if not heap and (buf is None or (end_sec is not None and buf.end_sec() > end_sec + 0.1)):
                break
        _decode_errors_ok(name, v_errors, v_decoded, "video frames")
        while heap and prev is not None and heap[0][0] <= prev_t + frame_dur + _EPS_SEC:
            take(prev, prev_t)
        samples = None
        if buf is not None:
            if a_decoded == 0:
                if require_audio:
                    raise NoAudioStream(name, f"the audio stream could not be decoded ({a_errors} bad packets)")
                buf = None
            else:
                buf.flush()
                samples = buf.array()
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
        shortfall_sec = (t + segment_sec) - buf.end_sec()
        if shortfall_sec > _AUDIO_TAIL_TOLERANCE * segment_sec:
            continue
        segments.append(Segment(index, t, rgb, buf.cut(samples, t, n_audio, True, name), stack))  # type: ignore[arg-type]
    return segments


def read_image(data: bytes | str | os.PathLike, *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Decode an encoded still image (JPEG, PNG, ...) to (H, W, 3) uint8 RGB.

    Uses Pillow (not a video decoder). Raises CorruptMedia for undecodable data and
    MediaTooLarge past ``max_pixels`` (checked from the header, before decoding).
    """
    from PIL import Image, UnidentifiedImageError

    from avlearn.media.errors import MediaTooLarge

    name = "" if isinstance(data, (bytes, bytearray)) else os.fspath(data)
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else name
        with Image.open(src) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise MediaTooLarge(name, f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as exc:
        raise MissingMedia(name, "no such file") from exc
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptMedia(name, f"cannot decode image: {exc}") from exc
