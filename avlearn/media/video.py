"""Frames: ``read_frames`` on the video's own frame grid, still images (``read_image``), and the one resize
rule (``resize_frames``) shared by decoded and query frames.

See ``avlearn.media._base`` for the time origin and the frame-grid rule.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import numpy as np

from avlearn.media import _base
from avlearn.media._base import _EPS_SEC, MediaSource, _decode, _decoding, _fps, _name, _open, _origin_sec, _packets, _set_threads, _video_stream
from avlearn.media.errors import CorruptMedia, MediaError, MediaTooLarge, MissingMedia, TooShort


@dataclass(frozen=True)
class Frames:
    """Frames read at requested times.

    Attributes:
        images: (N, H, W, 3) uint8 RGB, in the order of the requested times.
        times_sec: (N,) float64, each frame's own timestamp (the snapped time).
    """

    images: np.ndarray
    times_sec: np.ndarray


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


RESIZE_INTERPOLATION = "AREA"  # swscale's area averaging: anti-aliased when shrinking


def short_side_size(width: int | None, height: int | None, short_px: int) -> tuple[int, int] | None:
    """(H, W) with the short side = short_px and the aspect kept (even sizes); None = native."""
    if short_px <= 0 or not width or not height:
        return None
    if height <= width:
        return short_px, max(2, int(round(width * short_px / height / 2)) * 2)
    return max(2, int(round(height * short_px / width / 2)) * 2), short_px


def resize_frames(frames: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGB frames (..., H, W, 3) to (..., height, width, 3) with the decoder's own rule
    (swscale, area averaging): the one resize of the project for frames entering a model, so a
    query image and an indexed video frame of the same picture give the same pixels."""
    frames = np.asarray(frames)
    if frames.ndim < 3 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB (..., H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = (int(v) for v in size_px)
    if frames.shape[-3:-1] == (height, width):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = np.empty((len(flat), height, width, 3), np.uint8)
    for i, f in enumerate(flat):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
        out[i] = vf.reformat(width=width, height=height, format="rgb24", interpolation=RESIZE_INTERPOLATION).to_ndarray()
    return out.reshape(*frames.shape[:-3], height, width, 3)


def _to_rgb(frame, size_px: tuple[int, int] | None) -> np.ndarray:
    """Convert one decoded frame to (H, W, 3) uint8 RGB, resized to (height, width) when given."""
    if size_px is None:
        return frame.to_ndarray(format="rgb24")
    height, width = size_px
    if (frame.height, frame.width) == (height, width):
        return frame.to_ndarray(format="rgb24")
    # resize first, in the decoder's own pixel format, with area averaging (anti-aliased when
    # shrinking), then convert the small frame: ~3x cheaper than a scaling RGB conversion
    return frame.reformat(width=width, height=height, interpolation=RESIZE_INTERPOLATION).to_ndarray(format="rgb24")


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
    only when the next wanted time is more than ``_base.SEEK_THRESHOLD_SEC`` ahead (a seek
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
        sought_for = first_target if first_target > _base.SEEK_THRESHOLD_SEC else None
        gen = frames_from(sought_for)
        just_sought = first_target > _base.SEEK_THRESHOLD_SEC
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
            if seeking and target is not None and target - t > _base.SEEK_THRESHOLD_SEC and target != sought_for:
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
