"""Decoded frame sequences for the temporal samplers, and motion scores for window selection.

Shuffle-and-Learn and Odd-One-Out sample frames at chosen distances on a video's own frame
grid. For speed each video is decoded once into a compact in-memory :class:`VideoFrames`
(uint8 frames at the model's size, every ``stride``-th grid frame), and tuples are drawn from
that cache.

- Raw sources (folder | manifest | AudioSet csv): ``avlearn.media.probe`` gives the frame rate;
  frames are read with ``avlearn.media.read_frames`` at the grid times ``t0 + i·stride/fps``
  (each returned with its own timestamp; duplicates of a variable-frame-rate file are dropped).
- Prepared shard dirs (``avlearn prepare --frames-per-segment R``): the R frames stored per
  segment, concatenated over consecutive segments of a clip. This needs ``hop_sec ==
  segment_sec`` (segments that tile the video without holes); a missing segment splits the
  clip into separate runs. One cached step is then ``segment_sec / R`` seconds, i.e.
  ``fps · segment_sec / R`` grid frames (fps probed from the original file when it is still
  there, else ``default_fps``), so gaps given in grid frames are quantised to that step.

Motion (both samplers draw from high-motion windows, where order is visible), ``motion=``:

- ``"diff"`` (default): the mean absolute difference of consecutive cached frames, in grey levels (0-255);
- ``"flow"``: the mean magnitude of OpenCV's Farnebäck dense optical flow between consecutive cached
  frames, in pixels of the cache size per cached step (the paper's choice: coarse optical flow).
  Needs the optional extra ``avlearn[flow]`` (opencv-python-headless), imported only then.

Shot cuts are found from frame differences whatever the motion measure: steps with a difference
above ``cut_threshold`` are cuts; windows that cross one are never chosen (a cut would make order
trivially visible or meaningless).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CUT_THRESHOLD = 40.0
MOTION_MEASURES = ("diff", "flow")


class MissingDependencyError(ValueError):
    """An optional dependency is not installed; the message names the install command."""


@dataclass
class VideoFrames:
    """One video's (or one contiguous run's) cached frames.

    Attributes:
        clip_id, path, labels: from the source.
        frames: (T, H, W, 3) uint8 RGB at the cache size.
        times_sec: (T,) each frame's own timestamp, increasing.
        step_frames: grid frames of the video between two consecutive cached frames (> 0).
        motion: (T,) float32 motion of step t−1 → t (``motion_measure``: "diff" grey levels, "flow"
            pixels per step); motion[0] = motion[1].
        cut: (T,) bool, True where step t−1 → t is a shot cut (grey-level difference > ``cut_threshold``).
    """

    clip_id: str
    path: str
    frames: np.ndarray
    times_sec: np.ndarray
    step_frames: float
    labels: tuple[str, ...] = ()
    motion: np.ndarray = field(default=None)  # type: ignore[assignment]
    cut: np.ndarray = field(default=None)  # type: ignore[assignment]
    cut_threshold: float = DEFAULT_CUT_THRESHOLD
    motion_measure: str = "diff"

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {self.frames.dtype} {self.frames.shape}")
        if len(self.times_sec) != len(self.frames):
            raise ValueError("frames and times_sec differ in length")
        if not self.step_frames > 0:
            raise ValueError(f"step_frames must be > 0, got {self.step_frames}")
        diff = frame_motion(self.frames) if self.motion is None or self.cut is None else None
        if self.motion is None:
            self.motion = diff if self.motion_measure == "diff" else video_motion(self.frames, self.motion_measure)
        if self.cut is None:
            self.cut = diff > self.cut_threshold
            if len(self.cut):
                self.cut[0] = False

    def __len__(self) -> int:
        return len(self.frames)

    def steps(self, grid_frames: float) -> int:
        """A distance in grid frames → cached steps (rounded, at least 1)."""
        return max(1, int(round(grid_frames / self.step_frames)))


def frame_motion(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T,) float32 mean absolute grey-level difference to the previous frame.

    Frame 0 copies frame 1's value (0 for a single frame).
    """
    t = len(frames)
    if t < 2:
        return np.zeros(t, np.float32)
    grey = frames.astype(np.float32).mean(axis=-1)  # (T, H, W)
    diff = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))  # (T-1,)
    return np.concatenate([diff[:1], diff]).astype(np.float32)


def require_cv2():
    """The ``cv2`` module (OpenCV), imported on demand.

    Raises:
        MissingDependencyError: OpenCV is not installed.
    """
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependencyError("motion=flow needs OpenCV: pip install 'avlearn[flow]' (opencv-python-headless)") from exc
    return cv2


def flow_motion(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T,) float32 mean Farnebäck optical-flow magnitude to the previous frame (pixels).

    OpenCV's ``calcOpticalFlowFarneback`` with its documented example settings (pyramid 0.5, 3 levels,
    window 15, 3 iterations, poly_n 5, sigma 1.2) on grey frames. Frame 0 copies frame 1's value.
    """
    cv2 = require_cv2()
    t = len(frames)
    if t < 2:
        return np.zeros(t, np.float32)
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    mag = [float(np.linalg.norm(cv2.calcOpticalFlowFarneback(p, n, None, 0.5, 3, 15, 3, 5, 1.2, 0), axis=-1).mean()) for p, n in zip(grey, grey[1:])]
    return np.asarray(mag[:1] + mag, np.float32)


def video_motion(frames: np.ndarray, measure: str = "diff") -> np.ndarray:
    """(T, H, W, 3) uint8 → (T,) float32 motion per step by ``measure`` ("diff" | "flow"; see the module docstring)."""
    if measure == "diff":
        return frame_motion(frames)
    if measure == "flow":
        return flow_motion(frames)
    raise ValueError(f"motion measure must be one of {MOTION_MEASURES}, got {measure!r}")


def window_scores(video: VideoFrames, starts: np.ndarray, length: int) -> np.ndarray:
    """Mean motion over the windows ``[s, s + length]`` (steps) for each start s; −inf across a cut."""
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size == 0:
        return np.zeros(0, np.float32)
    c = np.concatenate([[0.0], np.cumsum(video.motion, dtype=np.float64)])
    cuts = np.concatenate([[0], np.cumsum(video.cut.astype(np.int64))])
    lo, hi = starts + 1, starts + length + 1  # motion of steps s→s+1 .. s+length-1→s+length
    score = (c[hi] - c[lo]) / max(1, length)
    crossing = (cuts[hi] - cuts[lo]) > 0
    return np.where(crossing, -np.inf, score).astype(np.float32)


def choose_window(video: VideoFrames, lo: int, hi: int, length: int, rng: np.random.Generator, *, quantile: float = 0.5) -> int | None:
    """A start s in [lo, hi] whose window of ``length`` steps has high motion.

    Candidates are the starts whose mean motion is at least the ``quantile`` of all valid
    starts (0 = any window, 0.5 = the busier half); one is drawn with probability
    proportional to its motion. Returns None when no start is valid (too short, or all cross a cut).
    """
    if hi < lo:
        return None
    starts = np.arange(lo, hi + 1)
    scores = window_scores(video, starts, length)
    ok = np.isfinite(scores)
    if not ok.any():
        return None
    starts, scores = starts[ok], scores[ok]
    if quantile > 0:
        keep = scores >= np.quantile(scores, quantile)
        starts, scores = starts[keep], scores[keep]
    w = scores.astype(np.float64) + 1e-3
    return int(rng.choice(starts, p=w / w.sum()))


# ---------------------------------------------------------------- cache loading


def _grid_times(info, start_sec: float, end_sec: float | None, stride: int, max_frames: int | None) -> np.ndarray:
    fps = float(info.fps or 25.0)
    end = info.duration_sec if end_sec is None else min(end_sec, info.duration_sec)
    step = stride / fps
    n = int(np.floor((end - start_sec) * fps / stride + 1e-6))
    if max_frames is not None:
        n = min(n, max_frames)
    return start_sec + step * np.arange(max(0, n))


def load_raw_video(
    span,
    *,
    size_px: tuple[int, int],
    stride: int = 1,
    max_frames: int | None = None,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
    motion_measure: str = "diff",
) -> VideoFrames:
    """Decode one clip span into a :class:`VideoFrames` (every ``stride``-th grid frame).

    Raises:
        MediaError (any subclass): the file cannot be read.
    """
    from avlearn.media import probe, read_frames

    info = probe(span.path)
    times = _grid_times(info, span.start_sec, span.end_sec, stride, max_frames)
    if len(times) == 0:
        from avlearn.media import TooShort

        raise TooShort(span.path, "no frames in the clip span")
    fr = read_frames(span.path, times, size_px=size_px)
    keep = np.concatenate([[True], np.diff(fr.times_sec) > 1e-9])  # drop repeats (variable frame rate)
    return VideoFrames(
        span.clip_id, span.path, fr.images[keep], fr.times_sec[keep], float(stride), tuple(span.labels), cut_threshold=cut_threshold,
        motion_measure=motion_measure,
    )  # fmt: skip


def _shard_videos(root: str, *, size_px: tuple[int, int], default_fps: float, cut_threshold: float, motion_measure: str = "diff") -> list[VideoFrames]:
    from avlearn.data.segments import iter_segment_records
    from avlearn.data.shards import read_prepare_config

    params = read_prepare_config(root)["params"]
    seg, hop = float(params["segment_sec"]), float(params["hop_sec"])
    r = int(params["frames_per_segment"])
    if abs(seg - hop) > 1e-9:
        raise ValueError(f"{root}: temporal samplers need segments that tile the video (hop_sec == segment_sec), got segment {seg} s, hop {hop} s")
    by_clip: dict[str, list] = {}
    for rec in iter_segment_records(root, size_px=size_px, segment_sec=seg, hop_sec=hop, require_audio=False):
        by_clip.setdefault(rec.clip_id, []).append(rec)
    fps_of: dict[str, float] = {}
    out: list[VideoFrames] = []
    for clip_id in sorted(by_clip):
        recs = sorted(by_clip[clip_id], key=lambda x: x.index)
        path = recs[0].path
        if path not in fps_of:
            fps_of[path] = default_fps
            if os.path.exists(path):
                from avlearn.media import MediaError, probe

                try:
                    fps_of[path] = float(probe(path).fps or default_fps)
                except MediaError:
                    pass
        step_frames = fps_of[path] * seg / r
        runs: list[list] = [[recs[0]]]
        for prev, cur in zip(recs, recs[1:]):
            if cur.index != prev.index + 1:
                runs.append([])
            runs[-1].append(cur)
        for j, run in enumerate(runs):
            frames = np.concatenate([rec.frames if rec.frames is not None else rec.frame[None] for rec in run])
            times = np.concatenate([rec.start_sec + np.arange(r) * seg / r for rec in run])
            cid = clip_id if len(runs) == 1 else f"{clip_id}#run{j}"
            out.append(VideoFrames(cid, path, frames, times, step_frames, tuple(run[0].labels), cut_threshold=cut_threshold, motion_measure=motion_measure))
    return out


def load_videos(
    src: str | os.PathLike,
    *,
    size_px: Sequence[int],
    stride: int = 1,
    max_frames: int | None = None,
    max_videos: int | None = None,
    default_fps: float = 25.0,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
    motion_measure: str = "diff",
    progress: bool = False,
) -> tuple[list[VideoFrames], list[dict]]:
    """Decode a source (raw or shard dir) once into frame caches at ``size_px`` (H, W); motion by ``motion_measure``.

    Returns:
        (videos, skipped): the caches, and one record per file that could not be read
        (``MediaError.to_record()``, or {"path", "error", "reason"}); a bad file never stops the load.
    """
    from avlearn.data.sources import is_shard_dir, load_source
    from avlearn.media import MediaError

    size = (int(size_px[0]), int(size_px[1]))
    if motion_measure not in MOTION_MEASURES:
        raise ValueError(f"motion measure must be one of {MOTION_MEASURES}, got {motion_measure!r}")
    if motion_measure == "flow":
        require_cv2()  # fail before decoding
    if is_shard_dir(src):
        return _shard_videos(str(src), size_px=size, default_fps=default_fps, cut_threshold=cut_threshold, motion_measure=motion_measure), []
    source = load_source(src)
    spans = source.spans[:max_videos] if max_videos else source.spans
    skipped: list[dict] = list(source.missing)
    videos: list[VideoFrames] = []
    from tqdm.auto import tqdm

    for span in tqdm(spans, desc="decode", unit="video", disable=not progress):
        try:
            videos.append(load_raw_video(span, size_px=size, stride=stride, max_frames=max_frames, cut_threshold=cut_threshold, motion_measure=motion_measure))
        except MediaError as exc:
            log.warning("skipping %s: %s", span.path, exc)
            skipped.append(exc.to_record())
    return videos, skipped
