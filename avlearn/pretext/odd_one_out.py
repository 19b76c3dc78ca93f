"""Odd-One-Out questions (Fernando, Bilen, Gavves & Gould, CVPR 2017).

One question = N subsequences of K frames from ONE video. Each subsequence is K frames
``gap`` grid frames apart, starting in a high-motion window (``avlearn.pretext.motion``);
N − 1 are shown in their true temporal order, one (the odd one, at a uniformly random
position) in a random non-identity permutation of its frames. The answer is the odd one's
position. Distances are in grid frames of the video, converted to cache steps.

Every question is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avlearn.pretext.motion import VideoFrames, choose_window


@dataclass(frozen=True)
class QuestionConfig:
    """Odd-One-Out sampling settings.

    Attributes:
        num_questions: N subsequences per question (paper: 6).
        frames_per_subsequence: K.
        gap: grid frames between consecutive frames of a subsequence.
        motion_quantile: windows are drawn from the busiest 1 − q of a video (0 = anywhere).
        spread: grid frames; > 0: all N subsequences start within this many grid frames of one
            high-motion anchor (neighbouring, overlapping moments of the video); 0: each
            subsequence starts in its own high-motion window anywhere in the video.
    """

    num_questions: int = 6
    frames_per_subsequence: int = 4
    gap: int = 6
    motion_quantile: float = 0.5
    spread: int = 0

    def __post_init__(self) -> None:
        if self.num_questions < 2 or self.frames_per_subsequence < 2 or self.gap < 1:
            raise ValueError(f"need num_questions >= 2, frames_per_subsequence >= 2, gap >= 1; got {self}")
        if self.spread < 0:
            raise ValueError(f"spread must be >= 0, got {self.spread}")
        if not 0.0 <= self.motion_quantile < 1.0:
            raise ValueError(f"motion_quantile must be in [0, 1), got {self.motion_quantile}")


@dataclass(frozen=True)
class OddQuestion:
    """One question: N subsequences of cache indices (each in presentation order) and the odd one.

    Attributes:
        video: index into the sampler's video list.
        subsequences: N tuples of K frame indices, as shown.
        odd: position (0..N−1) of the shuffled subsequence.
        permutation: how the odd one's sorted frames were reordered (not the identity).
    """

    video: int
    subsequences: tuple[tuple[int, ...], ...]
    odd: int
    permutation: tuple[int, ...]


def _span(video: VideoFrames, cfg: QuestionConfig) -> int:
    return video.steps(cfg.gap) * (cfg.frames_per_subsequence - 1)


def non_identity_permutation(k: int, rng: np.random.Generator) -> tuple[int, ...]:
    """A uniformly random permutation of range(k) other than the identity (k >= 2)."""
    while True:
        p = tuple(int(x) for x in rng.permutation(k))
        if p != tuple(range(k)):
            return p


def sample_question(video: VideoFrames, rng: np.random.Generator, cfg: QuestionConfig, *, video_index: int = 0) -> OddQuestion | None:
    """One question from ``video``, or None when a subsequence does not fit in it."""
    step = video.steps(cfg.gap)
    span = _span(video, cfg)
    if cfg.spread > 0:
        width = max(0, min(video.steps(cfg.spread), len(video) - 1 - span))  # a short video: a narrower spread
        anchor = choose_window(video, 0, len(video) - 1 - span - width, span + width, rng, quantile=cfg.motion_quantile)
        if anchor is None:
            return None
        starts = [anchor + int(x) for x in rng.integers(0, width + 1, size=cfg.num_questions)]
    else:
        starts = []
        for _ in range(cfg.num_questions):
            s = choose_window(video, 0, len(video) - 1 - span, span, rng, quantile=cfg.motion_quantile)
            if s is None:
                return None
            starts.append(s)
    subs = [tuple(s + j * step for j in range(cfg.frames_per_subsequence)) for s in starts]
    odd = int(rng.integers(cfg.num_questions))
    perm = non_identity_permutation(cfg.frames_per_subsequence, rng)
    subs[odd] = tuple(subs[odd][p] for p in perm)
    return OddQuestion(video_index, tuple(subs), odd, perm)


class OddOneOutQuestions:
    """Questions over cached videos; question ``i`` of epoch ``e`` is a pure function of (seed, e, i).

    Raises:
        ValueError: no video is long enough for one subsequence.
    """

    def __init__(self, videos: list[VideoFrames], cfg: QuestionConfig, *, seed: int) -> None:
        self.videos, self.cfg, self.seed = videos, cfg, int(seed)
        self.eligible = [i for i, v in enumerate(videos) if len(v) > _span(v, cfg)]
        if not self.eligible:
            raise ValueError(
                f"no video is long enough for odd-one-out subsequences of {cfg.frames_per_subsequence} frames {cfg.gap} grid frames apart "
                f"({len(videos)} videos)"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def question(self, i: int) -> OddQuestion:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        for _ in range(32):
            v = self.eligible[int(rng.integers(len(self.eligible)))]
            q = sample_question(self.videos[v], rng, self.cfg, video_index=v)
            if q is not None:
                return q
        raise RuntimeError("could not sample an odd-one-out question after 32 tries (videos cut everywhere?)")
