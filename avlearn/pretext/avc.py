"""Audio-visual correspondence (AVC) pairs with temporally matched negatives.

A positive pairs the frame on screen at t with the 1 s of audio starting at t in
the same video; a negative pairs that frame with 1 s of audio from ANOTHER video.
Both sides of every pair are segment records (:class:`avlearn.data.segments.SegmentRecord`),
so every audio start lies on its own video's frame grid and positives and
negatives went through the identical decode and feature path; only the pairing
differs. This is the matched-negative rule: a sampler that cuts negative audio at
arbitrary times (off the frame grid) lets a network solve the task from codec and
alignment artifacts instead of content (the "25 fps shortcut" of Arandjelović &
Zisserman, "Objects that Sound", ECCV 2018). ``tests/pretext/test_avc_sampler.py``
checks with a probe classifier that low-level cues do not separate our positives
from our negatives, and that they do separate a deliberately off-grid sampler's.

Optional hard negatives pair a frame with audio of the SAME video at least
``min_gap_sec`` away.

Two forms:
- :class:`CorrespondencePairs`: over an in-memory list of records (small worlds);
  pair ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)`` (exactly balanced:
  even ``i`` positive, odd ``i`` negative, both anchored on record ``i // 2``).
- :func:`stream_pairs`: over a record iterator (archive scale), through a shuffle
  buffer that also supplies the negatives' audio.

Datasets of model inputs over them: :class:`InMemoryAVC` and :class:`StreamingAVC`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from avlearn.data.segments import SegmentRecord
from avlearn.pretext.augment import crop_flip

POSITIVE, NEGATIVE, HARD_NEGATIVE = "positive", "negative", "hard_negative"


@dataclass(frozen=True)
class PairIndex:
    """One AVC pair over a record list: the frame of ``frame_idx`` with the audio of ``audio_idx``.

    ``label`` is 1 when they correspond (same segment), else 0; ``kind`` is
    "positive", "negative" (audio of another video) or "hard_negative" (same video, far away).
    """

    frame_idx: int
    audio_idx: int
    label: int
    kind: str


class CorrespondencePairs:
    """Balanced AVC pairs over an in-memory list of segment records.

    Args:
        records: segment records (each must have audio) from at least two videos.
        seed: base of the per-pair random streams.
        hard_negatives: fraction of negatives drawn from the same video, ``min_gap_sec``
            or more away (when that video has such a segment; else a normal negative).
        positive_fraction: 0.5 gives exact alternation; other values draw each label.

    Raises:
        ValueError: fewer than two videos, a record without audio, or a bad fraction.
    """

    def __init__(
        self, records: Sequence[SegmentRecord], *, seed: int = 0, hard_negatives: float = 0.0, min_gap_sec: float = 2.0, positive_fraction: float = 0.5
    ) -> None:
        if not 0.0 <= hard_negatives <= 1.0 or not 0.0 < positive_fraction < 1.0:
            raise ValueError("need 0 <= hard_negatives <= 1 and 0 < positive_fraction < 1")
        if any(r.audio is None for r in records):
            raise ValueError("every record needs audio for correspondence pairs")
        self.clips = np.array([hash_clip(r.clip_id) for r in records], dtype=np.int64)
        by_clip: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(self.clips):
            by_clip[int(c)].append(i)
        if len(by_clip) < 2:
            raise ValueError(f"correspondence pairs need segments of at least two videos, got {len(by_clip)}")
        self.n = len(records)
        self.starts = np.array([r.start_sec for r in records], dtype=np.float64)
        self.by_clip = {c: np.array(ix) for c, ix in by_clip.items()}
        self.seed, self.hard_negatives, self.min_gap_sec, self.positive_fraction = seed, hard_negatives, min_gap_sec, positive_fraction
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 2 * self.n

    def pair(self, i: int, epoch: int | None = None) -> PairIndex:
        """Pair ``i`` (0 <= i < 2N) of ``epoch`` (default: the current one); deterministic."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, i])
        anchor = i // 2
        positive = (i % 2 == 0) if self.positive_fraction == 0.5 else bool(rng.random() < self.positive_fraction)
        if positive:
            return PairIndex(anchor, anchor, 1, POSITIVE)
        if self.hard_negatives > 0 and rng.random() < self.hard_negatives:
            same = self.by_clip[int(self.clips[anchor])]
            far = same[np.abs(self.starts[same] - self.starts[anchor]) >= self.min_gap_sec - 1e-6]
            if far.size:
                return PairIndex(anchor, int(far[rng.integers(far.size)]), 0, HARD_NEGATIVE)
        return PairIndex(anchor, self._other_video(anchor, rng), 0, NEGATIVE)

    def _other_video(self, anchor: int, rng: np.random.Generator) -> int:
        # Rejection sampling: cheap while no single video dominates the records.
        for _ in range(64):
            j = int(rng.integers(self.n))
            if self.clips[j] != self.clips[anchor]:
                return j
        others = np.flatnonzero(self.clips != self.clips[anchor])
        return int(others[rng.integers(others.size)])

    def epoch_pairs(self, epoch: int | None = None) -> list[PairIndex]:
        return [self.pair(i, epoch) for i in range(len(self))]


def hash_clip(clip_id: str) -> int:
    """A stable 63-bit id of a clip (Python's str hash is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(clip_id.encode(), digest_size=8).digest(), "little") >> 1


@dataclass
class Pair:
    """One streamed AVC pair: the frame record and the record whose audio goes with it."""

    frame: SegmentRecord
    audio: SegmentRecord
    label: int
    kind: str


def stream_pairs(
    records: Iterable[SegmentRecord], *, seed: int = 0, buffer_size: int = 512, hard_negatives: float = 0.0, min_gap_sec: float = 2.0
) -> Iterator[Pair]:
    """Balanced AVC pairs from a record stream, through a shuffle buffer.

    The buffer fills to ``buffer_size`` records; then each step takes a random
    buffered record as the anchor and emits it as a positive or (alternately) as a
    negative whose audio is a random buffered record of another video (or, with
    probability ``hard_negatives``, of the same video ``min_gap_sec`` away). Negatives'
    audio is only lent: that record stays in the buffer and later becomes an anchor
    itself. An anchor that is due to be a negative while only its own video is
    buffered is dropped (this happens at the very end of the stream, or throughout
    when ``buffer_size`` is not larger than one video's segment count), so the
    stream stays balanced to within one pair.
    """
    if buffer_size < 2:
        raise ValueError("buffer_size must be >= 2")
    rng = np.random.default_rng(seed)
    buf: list[SegmentRecord] = []
    want_positive = True

    def negative_for(anchor: SegmentRecord) -> Pair | None:
        if hard_negatives > 0 and rng.random() < hard_negatives:
            far = [r for r in buf if r.clip_id == anchor.clip_id and abs(r.start_sec - anchor.start_sec) >= min_gap_sec - 1e-6]
            if far:
                return Pair(anchor, far[int(rng.integers(len(far)))], 0, HARD_NEGATIVE)
        others = [r for r in buf if r.clip_id != anchor.clip_id]
        if not others:
            return None
        return Pair(anchor, others[int(rng.integers(len(others)))], 0, NEGATIVE)

    def emit() -> Pair | None:
        nonlocal want_positive
        k = int(rng.integers(len(buf)))
        anchor = buf[k]
        buf[k] = buf[-1]
        buf.pop()
        if want_positive:
            want_positive = False
            return Pair(anchor, anchor, 1, POSITIVE)
        pair = negative_for(anchor)
        if pair is None:  # only this anchor's video is buffered: drop it, still owe a negative
            return None
        want_positive = True
        return pair

    for rec in records:
        if rec.audio is None:
            continue
        buf.append(rec)
        if len(buf) >= buffer_size:
            pair = emit()
            if pair is not None:
                yield pair
    while buf:
        pair = emit()
        if pair is not None:
            yield pair


# ---------------------------------------------------------------- datasets (the training task's and the evaluations')


def _decode_chunk(src: Any, kwargs: dict[str, Any]) -> list[SegmentRecord]:
    from avlearn.data.segments import load_segment_records

    return load_segment_records(src, **kwargs)


def decode_records(src: str, *, size_px: tuple[int, int], sample_rate_hz: int, segment_sec: float, workers: int = 1) -> list[SegmentRecord]:
    """Every segment of a raw source, decoded once (clips split over ``workers`` processes; order kept)."""
    from avlearn.data.sources import Source, load_source

    kwargs = dict(size_px=size_px, sample_rate_hz=sample_rate_hz, segment_sec=segment_sec, hop_sec=segment_sec)
    source = load_source(src)
    if workers <= 1 or len(source.spans) < 2 * workers:
        return _decode_chunk(source, kwargs)
    step = -(-len(source.spans) // (4 * workers))
    chunks = [Source(source.spec, source.kind, source.root, source.spans[i : i + step]) for i in range(0, len(source.spans), step)]
    with ProcessPoolExecutor(workers) as pool:
        return [r for part in pool.map(_decode_chunk, chunks, [kwargs] * len(chunks)) for r in part]


class InMemoryAVC(Dataset):
    """AVC samples over decoded records held in memory (frames at the model's size, spectrograms cached).

    Item ``i`` of epoch ``e`` is a pure function of (seed, e, i): the pair comes from
    :class:`avlearn.pretext.avc.CorrespondencePairs`, the crop from a generator seeded alike.
    """

    def __init__(self, records: list[SegmentRecord], preprocessing: dict[str, Any], *, seed: int, augment: bool, hard_negatives: float, fixed: bool) -> None:
        from avlearn.embed.preprocess import Preprocessor
        from avlearn.pretext.avc import CorrespondencePairs

        self.pre = Preprocessor.from_config(preprocessing)
        self.pairs = CorrespondencePairs(records, seed=seed, hard_negatives=hard_negatives)
        self.frames = np.stack([r.frame for r in records])  # (N, H, W, 3) uint8
        waves = np.stack([r.audio for r in records])  # type: ignore[misc]
        self.specs = torch.cat([self.pre.audio(waves[i : i + 256]) for i in range(0, len(waves), 256)])  # (N, 1, F, T)
        self.seed, self.augment, self.fixed = seed, augment, fixed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = 0 if self.fixed else int(epoch)
        self.pairs.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p = self.pairs.pair(i)
        frame = self.frames[p.frame_idx]
        if self.augment:
            frame = crop_flip(frame, np.random.default_rng([self.seed, self.epoch, i, 1]))
        return {"image": self.pre.image(frame), "audio": self.specs[p.audio_idx], "label": torch.tensor(p.label, dtype=torch.long)}


class StreamingAVC(IterableDataset):
    """AVC samples from a record stream (shards or a large raw source), paired through a shuffle buffer."""

    def __init__(
        self, data: str, preprocessing: dict[str, Any], *, seed: int, rank: int, world_size: int, augment: bool, hard_negatives: float, buffer: int, fixed: bool
    ) -> None:
        from avlearn.embed.preprocess import Preprocessor

        self.data, self.preprocessing = data, preprocessing
        self.pre = Preprocessor.from_config(preprocessing)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.augment, self.hard_negatives, self.buffer, self.fixed = augment, hard_negatives, buffer, fixed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = 0 if self.fixed else int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from avlearn.data.segments import iter_segment_records
        from avlearn.pretext.avc import stream_pairs

        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        records = iter_segment_records(
            self.data,
            size_px=self.pre.image_size_px,
            sample_rate_hz=self.pre.sample_rate_hz,
            segment_sec=self.pre.segment_sec,
            shuffle=not self.fixed,
            seed=self.seed + self.epoch,
            shard_slice=(self.rank, self.world_size),
        )
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, wid, 2])
        for pair in stream_pairs(records, seed=int(rng.integers(2**31)), buffer_size=self.buffer, hard_negatives=self.hard_negatives):
            frame = crop_flip(pair.frame.frame, rng) if self.augment else pair.frame.frame
            yield {"image": self.pre.image(frame), "audio": self.pre.spectrogram(pair.audio.audio), "label": torch.tensor(pair.label, dtype=torch.long)}
