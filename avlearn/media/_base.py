"""PyAV basics shared by the decoders: sources, opening, streams, packets, the time origin, ``probe``.

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

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av

from avlearn.media.errors import CorruptMedia, MediaError, MediaTooLarge, MissingMedia, NoAudioStream, NoVideoStream

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
