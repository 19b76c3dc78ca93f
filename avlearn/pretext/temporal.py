"""Datasets of the temporal pretext tasks (Shuffle-and-Learn, Odd-One-Out) over cached frames.

Each split is decoded once into frame caches at the model's size (:func:`load_cached_videos`,
``avlearn.pretext.motion.load_videos``); order tuples (``avlearn.pretext.shuffle_learn``) and
odd-one-out questions (``avlearn.pretext.odd_one_out``) index into them. The training tasks
(``training/tasks``) and the evaluations (``avlearn.eval.temporal``) build the same datasets.

Samples: Shuffle-and-Learn {"frames": (3, 3, H, W), "label": 1 = in order};
Odd-One-Out {"frames": (N, K, 3, H, W), "label": index of the odd subsequence};
frames float, normalised by the model's Preprocessor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avlearn.data.splits import resolve_split
from avlearn.pretext.augment import crop_flip
from avlearn.pretext.frame_stream import SequenceStream
from avlearn.pretext.motion import DEFAULT_CUT_THRESHOLD, VideoFrames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameCacheConfig:
    """What of each video is cached: every ``stride``-th grid frame, at most ``max_frames`` per video
    and ``max_videos`` videos (None: all); grey-level differences above ``cut_threshold`` are shot cuts;
    ``default_fps`` is assumed for shard clips whose file cannot be probed; ``motion`` is the measure
    that picks high-motion windows ("diff": frame differences, "flow": Farnebäck optical flow)."""

    stride: int = 1
    max_frames: int | None = None
    max_videos: int | None = None
    cut_threshold: float = DEFAULT_CUT_THRESHOLD
    default_fps: float = 25.0
    motion: str = "diff"


def split_source(data: str, split: str, train_data: str | None) -> str:
    """The source of ``split``: a ``--val-data`` given apart from ``--data`` is used as it is unless
    it has its own splits.

    Raises:
        FileNotFoundError: no such split (the loop then trains without validation).
    """
    explicit = split != "train" and train_data is not None and str(data) != train_data
    try:
        return resolve_split(data, split)
    except FileNotFoundError:
        if not explicit:
            raise
        return str(data)


def load_cached_videos(src: str, preprocessing: dict[str, Any], cfg: FrameCacheConfig, *, what: str = "temporal") -> list[VideoFrames]:
    """The frame caches of source ``src`` at the model's size.

    Raises:
        ValueError: nothing could be decoded.
    """
    from avlearn.pretext.motion import load_videos

    videos, skipped = load_videos(
        src, size_px=preprocessing["image_size_px"], stride=cfg.stride, max_frames=cfg.max_frames, max_videos=cfg.max_videos,
        default_fps=cfg.default_fps, cut_threshold=cfg.cut_threshold, motion_measure=cfg.motion,
    )  # fmt: skip
    if not videos:
        raise ValueError(f"{what}: no video could be decoded from {src} ({len(skipped)} skipped)")
    mb = sum(v.frames.nbytes for v in videos) / 2**20
    log.info("%s: %d videos, %d frames (%.0f MB) cached from %s; %d skipped", what, len(videos), sum(len(v) for v in videos), mb, src, len(skipped))
    return videos


def default_samples_per_epoch(n_videos: int) -> int:
    """Training samples per epoch when not given: 200 per training video, at least 2000."""
    return max(2000, 200 * n_videos)


class TemporalDataset(Dataset):
    """Base of the temporal datasets: frame caches + Preprocessor + a seeded per-item augmentation."""

    def __init__(
        self, videos: list[VideoFrames], preprocessing: dict[str, Any], *, seed: int, length: int, augment: bool, fixed: bool, jitter: float = 0.0
    ) -> None:
        from avlearn.embed.preprocess import Preprocessor

        self.videos = videos
        self.pre = Preprocessor.from_config(preprocessing)
        self.seed, self.length, self.augment, self.fixed, self.jitter = int(seed), int(length), augment, fixed, float(jitter)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = 0 if self.fixed else int(epoch)

    def __len__(self) -> int:
        return self.length

    def frames(self, video: int, indices: np.ndarray, i: int) -> torch.Tensor:
        """Cached frames ``indices`` (any shape) of ``video`` → float (*indices.shape, 3, H, W), one augmentation for all."""
        idx = np.asarray(indices)
        x = self.videos[video].frames[idx.reshape(-1)]
        if self.augment:
            x = crop_flip(x, np.random.default_rng([self.seed, self.epoch, int(i), 7]), jitter=self.jitter)
        out = self.pre.images(x)
        return out.reshape(*idx.shape, *out.shape[1:])


class ShuffleLearnDataset(TemporalDataset):
    """Shuffle-and-Learn samples {"frames": (3, 3, H, W), "label": long} over cached videos.

    ``balanced``: the evaluation layout (each draw's positive and one negative) instead of the
    training layout (all three tuples of each draw); see ``avlearn.pretext.shuffle_learn``.
    """

    def __init__(
        self,
        videos: list[VideoFrames],
        preprocessing: dict[str, Any],
        cfg: Any,
        *,
        seed: int,
        length: int,
        augment: bool,
        fixed: bool,
        balanced: bool,
        jitter: float = 0.0,
    ) -> None:
        from avlearn.pretext.shuffle_learn import ShuffleLearnTuples

        super().__init__(videos, preprocessing, seed=seed, length=length, augment=augment, fixed=fixed, jitter=jitter)
        self.tuples = ShuffleLearnTuples(videos, cfg, seed=seed, balanced=balanced)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.tuples.set_epoch(self.epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = self.tuples.tuple(i)
        return {"frames": self.frames(t.video, np.array(t.indices), i), "label": torch.tensor(t.label, dtype=torch.long)}


class OddOneOutDataset(TemporalDataset):
    """Odd-One-Out samples {"frames": (N, K, 3, H, W), "label": long} over cached videos."""

    def __init__(
        self, videos: list[VideoFrames], preprocessing: dict[str, Any], cfg: Any, *, seed: int, length: int, augment: bool, fixed: bool, jitter: float = 0.0
    ) -> None:
        from avlearn.pretext.odd_one_out import OddOneOutQuestions

        super().__init__(videos, preprocessing, seed=seed, length=length, augment=augment, fixed=fixed, jitter=jitter)
        self.questions = OddOneOutQuestions(videos, cfg, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.questions.set_epoch(self.epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        q = self.questions.question(i)
        return {"frames": self.frames(q.video, np.array(q.subsequences), i), "label": torch.tensor(q.odd, dtype=torch.long)}


def fixed_order_tuples(videos: list[VideoFrames], preprocessing: dict[str, Any], cfg: Any, *, seed: int, length: int) -> ShuffleLearnDataset:
    """Fixed, balanced Shuffle-and-Learn tuples (``cfg``: a TupleConfig) for evaluation: each draw's positive and one of its negatives."""
    return ShuffleLearnDataset(videos, preprocessing, cfg, seed=seed, length=length, augment=False, fixed=True, balanced=True)


def question_config(model: torch.nn.Module, *, gap: int, motion_quantile: float = 0.5, spread: int = 0):
    """The odd-one-out question shape of ``model`` (N questions of K frames) with ``gap`` grid frames between frames."""
    from avlearn.pretext.odd_one_out import QuestionConfig

    return QuestionConfig(
        num_questions=int(model.num_questions), frames_per_subsequence=int(model.frames_per_subsequence), gap=int(gap),
        motion_quantile=float(motion_quantile), spread=int(spread),
    )  # fmt: skip


def fixed_questions(videos: list[VideoFrames], preprocessing: dict[str, Any], cfg: Any, *, seed: int, length: int) -> OddOneOutDataset:
    """Fixed odd-one-out questions (``cfg``: a QuestionConfig) for evaluation."""
    return OddOneOutDataset(videos, preprocessing, cfg, seed=seed, length=length, augment=False, fixed=True)


# ---------------------------------------------------------------- streaming from frame shards


@dataclass(frozen=True)
class _Extent:
    """A sequence's cached length and step, known before decoding (duck-types VideoFrames for the length checks)."""

    n: int
    step_frames: float

    def __len__(self) -> int:
        return self.n

    def steps(self, grid_frames: float) -> int:
        return max(1, int(round(grid_frames / self.step_frames)))


def shard_extent(ref: Any, cfg: FrameCacheConfig) -> _Extent:
    """Cached frames and step of a stored sequence under the cache settings (stride, max_frames)."""
    n = -(-ref.frames // cfg.stride)
    return _Extent(min(n, cfg.max_frames) if cfg.max_frames else n, ref.step_frames * cfg.stride)


def shard_refs(src: str, cfg: FrameCacheConfig, fits: Any, *, what: str = "temporal") -> list:
    """The stored sequences of a frame shard dir that ``fits(extent)`` accepts (at most ``max_videos``).

    Raises:
        ValueError: none fits.
    """
    from avlearn.data.frame_shards import sequence_refs

    refs = sequence_refs(src)
    refs = refs[: cfg.max_videos] if cfg.max_videos else refs
    ok = [r for r in refs if fits(shard_extent(r, cfg))]
    if not ok:
        raise ValueError(f"{what}: no sequence of {src} is long enough ({len(refs)} sequences, longest {max((r.frames for r in refs), default=0)} frames)")
    log.info("%s: %d of %d sequences of %s are long enough", what, len(ok), len(refs), src)
    return ok


def _first_fit(window: list[VideoFrames], j: int, draw: Any, *, tries: int = 32) -> Any:
    """``draw(video, index)`` (None = no fit) up to ``tries`` times on window[j], else on the next sequences of the window (a sequence cut everywhere)."""
    for jj in [j] + [x for x in range(len(window)) if x != j]:
        for _ in range(tries):
            got = draw(window[jj], jj)
            if got is not None:
                return got
    raise RuntimeError("no sequence of the window gives a sample (videos cut everywhere?)")


class _TemporalStream:
    """Mixin of the temporal shard streams: sequences held as VideoFrames at the model's size, one augmentation per sample."""

    def _setup(self, preprocessing: dict[str, Any], cache: FrameCacheConfig, *, augment: bool, jitter: float) -> None:
        from avlearn.embed.preprocess import Preprocessor

        self.pre = Preprocessor.from_config(preprocessing)
        self.size_px = (int(preprocessing["image_size_px"][0]), int(preprocessing["image_size_px"][1]))
        self.cache, self.augment, self.jitter = cache, augment, float(jitter)

    def read_kwargs(self) -> dict[str, Any]:
        return {"size_px": self.size_px}

    def load(self, ref: Any, frames: np.ndarray, times_sec: np.ndarray, meta: dict) -> VideoFrames:
        c = self.cache
        frames, times_sec = frames[:: c.stride][: c.max_frames], times_sec[:: c.stride][: c.max_frames]
        return VideoFrames(
            ref.clip_id, meta["path"], frames, times_sec, ref.step_frames * c.stride, tuple(meta.get("labels", ())), cut_threshold=c.cut_threshold,
            motion_measure=c.motion,
        )  # fmt: skip

    def _frames(self, video: VideoFrames, indices: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        idx = np.asarray(indices)
        x = video.frames[idx.reshape(-1)]
        if self.augment:
            x = crop_flip(x, rng, jitter=self.jitter)
        out = self.pre.images(x)
        return out.reshape(*idx.shape, *out.shape[1:])


class ShuffleLearnStream(_TemporalStream, SequenceStream):
    """Shuffle-and-Learn samples {"frames": (3, 3, H, W), "label", "seq"} streamed from a frame shard dir.

    Sample k of a sequence: draw k // D (D = 2 balanced: positive + one negative; D = 3: all three tuples)
    and its tuple k % D, as in ``ShuffleLearnTuples`` but from that sequence (``per_sequence`` is a multiple of D).
    """

    def __init__(
        self, shard_dir: str, refs: list, preprocessing: dict[str, Any], cfg: Any, cache: FrameCacheConfig, *, balanced: bool, augment: bool,
        jitter: float = 0.0, **stream: Any,
    ) -> None:  # fmt: skip
        super().__init__(shard_dir, refs, **stream)
        self._setup(preprocessing, cache, augment=augment, jitter=jitter)
        self.cfg, self.balanced = cfg, balanced

    def sample(self, window: list[VideoFrames], j: int, k: int, uid: int) -> dict[str, torch.Tensor]:
        from avlearn.pretext.shuffle_learn import AFTER, BEFORE, KINDS, POSITIVE, order_tuple, sample_five

        d, r = divmod(k, 2 if self.balanced else 3)
        kind = (POSITIVE if r == 0 else (BEFORE if d % 2 == 0 else AFTER)) if self.balanced else KINDS[r]
        draw_rng = np.random.default_rng([self.seed, self.epoch, uid, d, 3])  # shared by the tuples of draw d
        rng = np.random.default_rng([self.seed, self.epoch, uid, k])

        five = _first_fit(window, j, lambda video, jj: sample_five(video, draw_rng, self.cfg, video_index=jj))
        flip = bool(self.cfg.reverse and rng.random() < 0.5)
        t = order_tuple(five, kind, reverse=flip)
        return {"frames": self._frames(window[t.video], np.array(t.indices), rng), "label": torch.tensor(t.label, dtype=torch.long)}


class OddOneOutStream(_TemporalStream, SequenceStream):
    """Odd-One-Out samples {"frames": (N, K, 3, H, W), "label", "seq"} streamed from a frame shard dir; sample k: one question."""

    def __init__(
        self, shard_dir: str, refs: list, preprocessing: dict[str, Any], cfg: Any, cache: FrameCacheConfig, *, augment: bool, jitter: float = 0.0,
        **stream: Any,
    ) -> None:  # fmt: skip
        super().__init__(shard_dir, refs, **stream)
        self._setup(preprocessing, cache, augment=augment, jitter=jitter)
        self.cfg = cfg

    def sample(self, window: list[VideoFrames], j: int, k: int, uid: int) -> dict[str, torch.Tensor]:
        from avlearn.pretext.odd_one_out import sample_question

        rng = np.random.default_rng([self.seed, self.epoch, uid, k])

        q = _first_fit(window, j, lambda video, jj: sample_question(video, rng, self.cfg, video_index=jj))
        return {"frames": self._frames(window[q.video], np.array(q.subsequences), rng), "label": torch.tensor(q.odd, dtype=torch.long)}
