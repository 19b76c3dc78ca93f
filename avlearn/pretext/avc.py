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
from our negatives, and ``avlearn audit shortcuts`` (training/audit.py) checks it with the
real network.

Temporal jitter (``per_slot`` = N > 1): the records are decoded at a hop of
``segment_sec / N``, so each 1 s *slot* k of a clip has N start candidates
j = 0..N-1, wanted at ``k + j / N`` s and snapped onto the clip's frame grid (each
is a full record: the frame on screen then and the audio from that frame's
timestamp). A pair picks one candidate of its anchor slot at random.

Negatives are matched in time as well as in path: the negative audio is a record
of another video in the same *position class* (its slot is the clip's first,
last, only or an interior one: first and last segments carry codec priming and
padding) and with the same candidate j; when no other video has such a record the
match widens to the position class, then to any other video.

Optional hard negatives pair a frame with audio of the SAME video at least
``min_gap_sec`` away (the same candidate j where one exists).

Two forms:
- :class:`CorrespondencePairs`: over an in-memory list of records (small worlds);
  pair ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)`` (exactly balanced:
  even ``i`` positive, odd ``i`` negative, both anchored on slot ``i // 2``).
- :func:`stream_pairs`: over a record iterator, through a shuffle buffer that also
  supplies the negatives' audio (every record, jitter candidates included, anchors
  one pair). The training stream does not use it any more: its order depends on the
  buffer's history (no cheap resume) and a small buffer over class-sorted input lends
  same-class negatives; :class:`~avlearn.pretext.avc_datasets.StreamingAVC` draws
  from :meth:`CorrespondencePairs.pair_of` over groups of shards instead.

Datasets of model inputs over them: :class:`avlearn.pretext.avc_datasets.InMemoryAVC` and
:class:`~avlearn.pretext.avc_datasets.StreamingAVC`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from avlearn.data.segments import SegmentRecord

POSITIVE, NEGATIVE, HARD_NEGATIVE = "positive", "negative", "hard_negative"
FIRST, LAST, ONLY, INTERIOR = "first", "last", "only", "interior"


def position_class(slot: int, last_slot: int | None) -> str:
    """Where slot ``slot`` sits in its clip: "first", "last", "only" (a one-slot clip) or "interior".

    ``last_slot``: the clip's last slot, or None when unknown (then no slot counts as last).
    """
    first = slot == 0
    last = last_slot is not None and slot >= last_slot
    return ONLY if first and last else FIRST if first else LAST if last else INTERIOR


def record_slot(rec: SegmentRecord, per_slot: int) -> tuple[int, int, str]:
    """(slot, candidate j, position class) of a record decoded at a hop of ``segment_sec / per_slot``."""
    slot, j = divmod(rec.index, per_slot)
    return slot, j, position_class(slot, None if rec.last_index is None else rec.last_index // per_slot)


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
        records: segment records (each must have audio) from at least two videos; with
            ``per_slot`` = N they were decoded at a hop of ``segment_sec / N`` (``decode_records``).
        seed: base of the per-pair random streams.
        hard_negatives: fraction of negatives drawn from the same video, ``min_gap_sec``
            or more away (when that video has such a segment; else a normal negative).
        positive_fraction: 0.5 gives exact alternation; other values draw each label.
        per_slot: jitter candidates per slot (1: the fixed segment grid).
        units: per record, the unit (shard) it was read from, or None. When given, a negative's
            audio comes from another unit where one has a match (a shard is a contiguous run of
            the source, often of one class; see :class:`~avlearn.pretext.avc_datasets.StreamingAVC`).

    A clip's last slot is the highest one among its records in ``records``.

    Raises:
        ValueError: fewer than two videos, a record without audio, or a bad fraction.
    """

    def __init__(
        self,
        records: Sequence[SegmentRecord],
        *,
        seed: int = 0,
        hard_negatives: float = 0.0,
        min_gap_sec: float = 2.0,
        positive_fraction: float = 0.5,
        per_slot: int = 1,
        units: Sequence[int] | None = None,
    ) -> None:
        if not 0.0 <= hard_negatives <= 1.0 or not 0.0 < positive_fraction < 1.0:
            raise ValueError("need 0 <= hard_negatives <= 1 and 0 < positive_fraction < 1")
        if per_slot < 1:
            raise ValueError(f"per_slot must be >= 1, got {per_slot}")
        if any(isinstance(r, SegmentRecord) and r.audio is None for r in records):  # (lazy refs are read with audio)
            raise ValueError("every record needs audio for correspondence pairs")
        self.clips = np.array([hash_clip(r.clip_id) for r in records], dtype=np.int64)
        by_clip: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(self.clips):
            by_clip[int(c)].append(i)
        if len(by_clip) < 2:
            raise ValueError(f"correspondence pairs need segments of at least two videos, got {len(by_clip)}")
        self.n_records = len(records)
        self.per_slot = per_slot
        self.starts = np.array([r.start_sec for r in records], dtype=np.float64)
        self.slot = np.array([r.index // per_slot for r in records], dtype=np.int64)
        self.cand = np.array([r.index % per_slot for r in records], dtype=np.int64)
        last_slot = {c: int(self.slot[ix].max()) for c, ix in by_clip.items()}
        self.position = np.array([position_class(int(self.slot[i]), last_slot[int(self.clips[i])]) for i in range(len(records))])
        # anchors: the slots, in order of first appearance; each lists its candidates' record indices
        slots: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i in range(len(records)):
            slots[(int(self.clips[i]), int(self.slot[i]))].append(i)
        self.slots = [np.array(sorted(ix, key=lambda k: self.cand[k])) for ix in slots.values()]
        self.n = len(self.slots)
        pools: dict[tuple, list[int]] = defaultdict(list)
        for i in range(len(records)):
            pools[(str(self.position[i]), int(self.cand[i]))].append(i)
            pools[(str(self.position[i]),)].append(i)
        self.pools = {k: np.array(v) for k, v in pools.items()}
        self.by_clip = {c: np.array(ix) for c, ix in by_clip.items()}
        self.units = None if units is None else np.asarray(units, dtype=np.int64)
        if self.units is not None and self.units.shape != (len(records),):
            raise ValueError(f"units must give one unit per record, got {self.units.shape} for {len(records)} records")
        self.seed, self.hard_negatives, self.min_gap_sec, self.positive_fraction = seed, hard_negatives, min_gap_sec, positive_fraction
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 2 * self.n

    def pair(self, i: int, epoch: int | None = None) -> PairIndex:
        """Pair ``i`` (0 <= i < 2N, N slots) of ``epoch`` (default: the current one); deterministic."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, i])
        cands = self.slots[i // 2]
        anchor = int(cands[rng.integers(cands.size)]) if cands.size > 1 else int(cands[0])
        positive = (i % 2 == 0) if self.positive_fraction == 0.5 else bool(rng.random() < self.positive_fraction)
        return self.pair_of(anchor, positive, rng)

    def pair_of(self, anchor: int, positive: bool, rng: np.random.Generator) -> PairIndex:
        """The pair anchored on record ``anchor``'s frame: its own audio, or a negative drawn with ``rng``."""
        if positive:
            return PairIndex(anchor, anchor, 1, POSITIVE)
        if self.hard_negatives > 0 and rng.random() < self.hard_negatives:
            same = self.by_clip[int(self.clips[anchor])]
            far = same[np.abs(self.starts[same] - self.starts[anchor]) >= self.min_gap_sec - 1e-6]
            if far.size:
                far_j = far[self.cand[far] == self.cand[anchor]]
                pool = far_j if far_j.size else far
                return PairIndex(anchor, int(pool[rng.integers(pool.size)]), 0, HARD_NEGATIVE)
        return PairIndex(anchor, self.matched_audio(anchor, rng), 0, NEGATIVE)

    def matched_audio(self, anchor: int, rng: np.random.Generator) -> int:
        """A record of another video to pair with ``anchor``'s frame: same position class and
        candidate j when any other video has one, else the same position class, else any other video;
        at each of these steps, from another unit first when ``units`` was given."""
        clip = self.clips[anchor]
        position = str(self.position[anchor])
        unit = None if self.units is None else int(self.units[anchor])
        for key in ((position, int(self.cand[anchor])), (position,), None):
            pool = self.pools.get(key) if key is not None else np.arange(self.n_records)
            if pool is None:
                continue
            for away in (True, False) if unit is not None else (False,):
                for _ in range(16 if key is not None else 0):  # rejection sampling: cheap while no single video (unit) dominates the pool
                    j = int(pool[rng.integers(pool.size)])
                    if self.clips[j] != clip and not (away and self.units[j] == unit):  # type: ignore[index]
                        return j
                ok = self.clips[pool] != clip
                if away:
                    ok &= self.units[pool] != unit  # type: ignore[index]
                others = pool[ok]
                if others.size:
                    return int(others[rng.integers(others.size)])
        raise AssertionError("unreachable: the constructor checked for two videos")

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
    records: Iterable[SegmentRecord],
    *,
    seed: int = 0,
    buffer_size: int = 512,
    hard_negatives: float = 0.0,
    min_gap_sec: float = 2.0,
    per_slot: int = 1,
) -> Iterator[Pair]:
    """Balanced AVC pairs from a record stream, through a shuffle buffer.

    The buffer fills to ``buffer_size`` records; then each step takes a random
    buffered record as the anchor and emits it as a positive or (alternately) as a
    negative whose audio is a random buffered record of another video, matched on
    position class and candidate j like :meth:`CorrespondencePairs.matched_audio`
    (a record's last slot comes from its ``last_index``; without it no slot counts
    as last), or, with probability ``hard_negatives``, of the same video
    ``min_gap_sec`` away. Negatives' audio is only lent: that record stays in the
    buffer and later becomes an anchor itself. An anchor that is due to be a
    negative while only its own video is buffered is dropped (this happens at the
    very end of the stream, or throughout when ``buffer_size`` is not larger than
    one video's segment count), so the stream stays balanced to within one pair.
    """
    if buffer_size < 2:
        raise ValueError("buffer_size must be >= 2")
    if per_slot < 1:
        raise ValueError(f"per_slot must be >= 1, got {per_slot}")
    rng = np.random.default_rng(seed)
    buf: list[SegmentRecord] = []
    want_positive = True

    def negative_for(anchor: SegmentRecord) -> Pair | None:
        _, j, position = record_slot(anchor, per_slot)
        if hard_negatives > 0 and rng.random() < hard_negatives:
            far = [r for r in buf if r.clip_id == anchor.clip_id and abs(r.start_sec - anchor.start_sec) >= min_gap_sec - 1e-6]
            if far:
                far = [r for r in far if r.index % per_slot == j] or far
                return Pair(anchor, far[int(rng.integers(len(far)))], 0, HARD_NEGATIVE)
        others = [r for r in buf if r.clip_id != anchor.clip_id]
        if not others:
            return None
        keyed = [(r, record_slot(r, per_slot)) for r in others]
        for pool in ([r for r, (_, rj, rp) in keyed if rp == position and rj == j], [r for r, (_, _, rp) in keyed if rp == position], others):
            if pool:
                return Pair(anchor, pool[int(rng.integers(len(pool)))], 0, NEGATIVE)
        return None

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
