"""``read_segments``: one pass over a file giving grid-aligned (frame, audio) segments."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from avlearn.media._base import (
    _AUDIO_TAIL_TOLERANCE,
    _EPS_SEC,
    MediaSource,
    _decode,
    _decoding,
    _fps,
    _name,
    _open,
    _origin_sec,
    _packets,
    _set_threads,
    _video_stream,
)
from avlearn.media.audio import _AudioBuffer
from avlearn.media.errors import CorruptMedia, NoAudioStream
from avlearn.media.video import _check_size, _FrameClock, _to_rgb


class SegmentList(list):
    """``read_segments``' result: the segments, plus ``gaps``: the grid positions skipped because
    no new frame was shown there (a frame gap, or a variable frame rate slower than the hop), each
    ``{"index": k, "wanted_sec": t_k, "frame_sec": the held frame's time}``. Such a position would
    repeat the previous segment's frame and audio window, so it is never emitted as a segment."""

    def __init__(self, items: list[Segment] | None = None, gaps: list[dict] | None = None) -> None:
        super().__init__(items or [])
        self.gaps: list[dict] = list(gaps or [])


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
) -> SegmentList:
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
    segments = SegmentList()
    video_end = (prev_t or 0.0) + frame_dur
    last_t: float | None = None
    for index in sorted(picked):
        got = picked[index]
        if len(got) < frames_per_segment:
            continue
        t, rgb = got[0]
        if last_t is not None and t <= last_t + _EPS_SEC:  # the frame on screen is the previous segment's: a gap
            segments.gaps.append({"index": index, "wanted_sec": round(start_sec + index * hop_sec, 6), "frame_sec": round(t, 6)})
            continue
        last_t = t
        stack = np.stack([got[j][1] for j in range(frames_per_segment)]) if frames_per_segment > 1 else None
        if buf is None:
            if t + segment_sec <= video_end + _EPS_SEC:
                segments.append(Segment(index, t, rgb, None, stack))
            continue
        audio = audio_of.get(index)
        if audio is not None:
            segments.append(Segment(index, t, rgb, audio, stack))
    return segments
