"""Shuffle-and-Learn tuples (Misra, Zitnick & Hebert, ECCV 2016): temporal order verification.

As in the paper, every training example comes from ONE draw of five frames a < b < c < d < e
(on the video's frame grid) in a high-motion window, which gives three tuples:

- positive: (b, c, d), the middle frame lies between the others;
- negatives: (b, a, d) and (b, e, d), the middle frame lies *outside* the window from b to d,
  at least ``tau_min`` and at most ``tau_max`` grid frames before b (a) or after d (e).

The positive and its negatives share b and d, so only the middle frame tells them apart (drawn
apart, a negative's window could be told from a positive's by where it sits in the video). The
window b → d spans between ``max(2, tau_min)`` and ``tau_max`` grid frames (paper: 60 and 15
frames at 30 fps). c is drawn at least ``middle_margin`` of the span away from b and d, so a
positive's middle frame is not a near copy of an end frame. As in the paper, order is verified,
not direction: with ``reverse`` a tuple is shown backwards half the time ((d, c, b) is still
positive, (d, a, b) still negative).

Two layouts of items: ``balanced`` (evaluation, and training by default): items 2j and 2j + 1
are draw j's positive and one of its negatives (before for even j, after for odd j), half
positives, chance 0.5; and the full layout (training with ``train_tuples=all``): items 3j, 3j + 1,
3j + 2 are all three tuples of draw j (positive, before, after; one positive in three; the paper
used about one in four). Measured on the motion world (docs/temporal.md), the full layout's
one-in-three prior held a ``small`` trunk at "always negative" for 4000 steps.

Windows are chosen by motion (``avlearn.pretext.motion.choose_window``): among the starts
whose whole extent a → e has a mean motion in the top ``1 − motion_quantile``, drawn in
proportion to it, never across a shot cut.

Distances are given in grid frames of the video and converted to steps of the frame cache
(``VideoFrames.steps``), so a cache of every 2nd frame or of shard frames keeps the meaning.
Every draw is a pure function of (seed, epoch, draw index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avlearn.pretext.motion import VideoFrames, choose_window

POSITIVE, BEFORE, AFTER = "positive", "before", "after"
KINDS = (POSITIVE, BEFORE, AFTER)


@dataclass(frozen=True)
class TupleConfig:
    """Shuffle-and-Learn sampling settings (distances in grid frames of the video)."""

    tau_max: int = 60
    tau_min: int = 15
    reverse: bool = True
    middle_margin: float = 0.2
    motion_quantile: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.tau_min <= self.tau_max:
            raise ValueError(f"need 1 <= tau_min <= tau_max, got tau_min={self.tau_min}, tau_max={self.tau_max}")
        if not 0.0 <= self.middle_margin < 0.5:
            raise ValueError(f"middle_margin must be in [0, 0.5), got {self.middle_margin}")
        if not 0.0 <= self.motion_quantile < 1.0:
            raise ValueError(f"motion_quantile must be in [0, 1), got {self.motion_quantile}")


@dataclass(frozen=True)
class FiveFrames:
    """One draw: cache indices a < b < c < d < e of video ``video`` (an index into the sampler's list)."""

    video: int
    a: int
    b: int
    c: int
    d: int
    e: int

    def middle(self, kind: str) -> int:
        """The middle frame of the tuple ``kind``: c (positive), a (before) or e (after)."""
        return {POSITIVE: self.c, BEFORE: self.a, AFTER: self.e}[kind]


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
        draw: the five-frame draw the tuple comes from.
    """

    video: int
    indices: tuple[int, int, int]
    label: int
    kind: str
    window: tuple[int, int]
    reversed: bool
    draw: FiveFrames


def min_length(video: VideoFrames, cfg: TupleConfig) -> int:
    """Cached frames a video needs for one draw: the shortest window plus the shortest offsets of a and e."""
    tmin = video.steps(cfg.tau_min)
    return max(2, tmin) + 2 * tmin + 1


def sample_five(video: VideoFrames, rng: np.random.Generator, cfg: TupleConfig, *, video_index: int = 0) -> FiveFrames | None:
    """One draw of five frames a < b < c < d < e from a high-motion window of ``video``, or None when it does not fit.

    d − b ∈ [max(2, tau_min), tau_max], b − a and e − d ∈ [tau_min, tau_max] (in cache steps), c at least
    ``middle_margin`` of d − b from b and d. Offsets that leave no room are shortened to tau_min first.
    """
    t = len(video)
    tmax, tmin = video.steps(cfg.tau_max), video.steps(cfg.tau_min)
    span_lo = max(2, tmin)
    off_a, off_e = (int(x) for x in rng.integers(tmin, tmax + 1, size=2))
    if min(tmax, t - 1 - off_a - off_e) < span_lo:  # a short video: the shortest offsets before giving up
        off_a = off_e = tmin
    span_hi = min(tmax, t - 1 - off_a - off_e)
    if span_hi < span_lo:
        return None
    span = int(rng.integers(span_lo, span_hi + 1))
    extent = off_a + span + off_e
    start = choose_window(video, 0, t - 1 - extent, extent, rng, quantile=cfg.motion_quantile)
    if start is None:
        return None
    b = start + off_a
    d = b + span
    m = min(max(1, int(round(cfg.middle_margin * span))), span // 2)
    c = b + int(rng.integers(m, span - m + 1))
    return FiveFrames(video_index, start, b, c, d, d + off_e)


def order_tuple(draw: FiveFrames, kind: str, *, reverse: bool) -> OrderTuple:
    """The tuple ``kind`` of a draw: (b, c, d), (b, a, d) or (b, e, d), shown backwards when ``reverse``."""
    indices = (draw.b, draw.middle(kind), draw.d)
    if reverse:
        indices = indices[::-1]
    return OrderTuple(draw.video, indices, int(kind == POSITIVE), kind, (draw.b, draw.d), reverse, draw)


class ShuffleLearnTuples:
    """Tuples over a list of cached videos; draw ``j`` of epoch ``e`` is a pure function of (seed, e, j).

    Args:
        videos: the frame caches.
        cfg: sampling settings.
        seed: the stream's seed.
        balanced: evaluation layout (items 2j, 2j + 1: the positive and one negative of draw j)
            instead of the training layout (items 3j .. 3j + 2: all three tuples of draw j).

    Raises:
        ValueError: no video is long enough for a draw.
    """

    def __init__(self, videos: list[VideoFrames], cfg: TupleConfig, *, seed: int, balanced: bool = False) -> None:
        self.videos, self.cfg, self.seed, self.balanced = videos, cfg, int(seed), balanced
        self.eligible = [i for i, v in enumerate(videos) if len(v) >= min_length(v, cfg)]
        if not self.eligible:
            lens = sorted({len(v) for v in videos})[:5]
            raise ValueError(
                f"no video is long enough for shuffle-and-learn tuples (tau_min={cfg.tau_min}, tau_max={cfg.tau_max} grid frames; "
                f"{len(videos)} videos, shortest cached lengths {lens})"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def draw(self, j: int) -> FiveFrames:
        """Draw ``j``: a video (uniform over the eligible ones) and five frames from it."""
        rng = np.random.default_rng([self.seed, self.epoch, int(j)])
        for _ in range(32):
            v = self.eligible[int(rng.integers(len(self.eligible)))]
            five = sample_five(self.videos[v], rng, self.cfg, video_index=v)
            if five is not None:
                return five
        raise RuntimeError("could not draw five frames after 32 tries (videos cut everywhere?)")

    def locate(self, i: int) -> tuple[int, str]:
        """Item ``i`` → (draw index, tuple kind) in this sampler's layout."""
        if self.balanced:
            j, r = divmod(int(i), 2)
            return j, POSITIVE if r == 0 else (BEFORE if j % 2 == 0 else AFTER)
        j, r = divmod(int(i), 3)
        return j, KINDS[r]

    def tuple(self, i: int) -> OrderTuple:
        j, kind = self.locate(i)
        flip = np.random.default_rng([self.seed, self.epoch, j, KINDS.index(kind), 1]).random() < 0.5
        return order_tuple(self.draw(j), kind, reverse=bool(self.cfg.reverse and flip))
