"""Shuffle-and-Learn tuples (Misra, Zitnick & Hebert, ECCV 2016): temporal order verification.

From a high-motion window of a video, five frames a < b < c < d < e (on the video's frame
grid) give one tuple of three:

- positive: (b, c, d), the middle frame lies between the others;
- negative: (b, a, d) or (b, e, d), the middle frame lies *outside* the window from b to d,
  at least ``tau_min`` and at most ``tau_max`` grid frames before b (a) or after d (e).

The window b → d spans between ``max(2, tau_min)`` and ``tau_max`` grid frames (paper: 60 and
15 frames at 30 fps). c is drawn at least ``middle_margin`` of the span away from b and d, so
a positive's middle frame is not a near copy of an end frame. As in the paper, order is
verified, not direction: with ``reverse`` a tuple is shown backwards half the time ((d, c, b)
is still positive, (d, a, b) still negative). The paper used ~25% positives; the fraction is
``positive_fraction`` (default 0.5; evaluation always uses balanced sets).

Windows are chosen by motion (``avlearn.pretext.motion.choose_window``): among the starts
whose whole tuple extent has a mean frame difference in the top ``1 − motion_quantile``,
drawn in proportion to it, never across a shot cut.

Distances are given in grid frames of the video and converted to steps of the frame cache
(``VideoFrames.steps``), so a cache of every 2nd frame or of shard frames keeps the meaning.
Every tuple is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avlearn.pretext.motion import VideoFrames, choose_window

POSITIVE, BEFORE, AFTER = "positive", "before", "after"


@dataclass(frozen=True)
class TupleConfig:
    """Shuffle-and-Learn sampling settings (distances in grid frames of the video)."""

    tau_max: int = 60
    tau_min: int = 15
    positive_fraction: float = 0.5
    reverse: bool = True
    middle_margin: float = 0.2
    motion_quantile: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.tau_min <= self.tau_max:
            raise ValueError(f"need 1 <= tau_min <= tau_max, got tau_min={self.tau_min}, tau_max={self.tau_max}")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {self.positive_fraction}")
        if not 0.0 <= self.middle_margin < 0.5:
            raise ValueError(f"middle_margin must be in [0, 0.5), got {self.middle_margin}")
        if not 0.0 <= self.motion_quantile < 1.0:
            raise ValueError(f"motion_quantile must be in [0, 1), got {self.motion_quantile}")


@dataclass(frozen=True)
class OrderTuple:
    """One tuple: cache indices of ``video`` in the order shown, and whether that order is right.

    Attributes:
        video: index into the sampler's video list.
        indices: three frame indices, in presentation order.
        label: 1 = in order (positive), 0 = not.
        kind: "positive" | "before" (a shown in the middle) | "after" (e shown in the middle).
        window: (b, d), the window's ends (b < d), whatever the presentation order.
        reversed: whether the tuple is shown backwards.
    """

    video: int
    indices: tuple[int, int, int]
    label: int
    kind: str
    window: tuple[int, int]
    reversed: bool


def _min_length(video: VideoFrames, cfg: TupleConfig, kind: str) -> int:
    """Frames a video needs for a tuple of ``kind`` (the shortest span, plus the shortest offset)."""
    span = max(2, video.steps(cfg.tau_min))
    return span + 1 + (video.steps(cfg.tau_min) if kind != POSITIVE else 0)


def sample_tuple(video: VideoFrames, rng: np.random.Generator, cfg: TupleConfig, kind: str, *, video_index: int = 0) -> OrderTuple | None:
    """One tuple of ``kind`` ("positive" | "before" | "after") from ``video``, or None when it does not fit."""
    t = len(video)
    tmax, tmin = video.steps(cfg.tau_max), video.steps(cfg.tau_min)
    span_lo = max(2, tmin)
    off = int(rng.integers(tmin, tmax + 1)) if kind != POSITIVE else 0
    span_hi = min(tmax, t - 1 - off)
    if span_hi < span_lo and kind != POSITIVE:  # shorten the offset before giving up
        off = tmin
        span_hi = min(tmax, t - 1 - off)
    if span_hi < span_lo:
        return None
    span = int(rng.integers(span_lo, span_hi + 1))
    extent = span + off
    start = choose_window(video, 0, t - 1 - extent, extent, rng, quantile=cfg.motion_quantile)
    if start is None:
        return None
    b = start + off if kind == BEFORE else start
    d = b + span
    m = max(1, int(round(cfg.middle_margin * span)))
    m = min(m, span // 2)
    c = b + int(rng.integers(m, span - m + 1))
    middle = {POSITIVE: c, BEFORE: b - off, AFTER: d + off}[kind]
    indices = (b, middle, d)
    rev = bool(cfg.reverse and rng.random() < 0.5)
    if rev:
        indices = indices[::-1]
    return OrderTuple(video_index, indices, int(kind == POSITIVE), kind, (b, d), rev)


class ShuffleLearnTuples:
    """Tuples over a list of cached videos; tuple ``i`` of epoch ``e`` is a pure function of (seed, e, i).

    Args:
        videos: the frame caches.
        cfg: sampling settings.
        seed: the stream's seed.
        balanced: labels alternate exactly (even i positive) instead of following positive_fraction.

    Raises:
        ValueError: no video is long enough for a tuple.
    """

    def __init__(self, videos: list[VideoFrames], cfg: TupleConfig, *, seed: int, balanced: bool = False) -> None:
        self.videos, self.cfg, self.seed, self.balanced = videos, cfg, int(seed), balanced
        self.eligible = {k: [i for i, v in enumerate(videos) if len(v) >= _min_length(v, cfg, k)] for k in (POSITIVE, BEFORE, AFTER)}
        if not self.eligible[BEFORE]:
            lens = sorted({len(v) for v in videos})[:5]
            raise ValueError(
                f"no video is long enough for shuffle-and-learn tuples (tau_min={cfg.tau_min}, tau_max={cfg.tau_max} grid frames; "
                f"{len(videos)} videos, shortest cached lengths {lens})"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def tuple(self, i: int) -> OrderTuple:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        positive = (i % 2 == 0) if self.balanced else bool(rng.random() < self.cfg.positive_fraction)
        for _ in range(32):
            kind = POSITIVE if positive else (BEFORE if rng.random() < 0.5 else AFTER)
            pool = self.eligible[kind]
            v = pool[int(rng.integers(len(pool)))]
            tup = sample_tuple(self.videos[v], rng, self.cfg, kind, video_index=v)
            if tup is not None:
                return tup
        raise RuntimeError(f"could not sample a {'positive' if positive else 'negative'} tuple after 32 tries (videos cut everywhere?)")
