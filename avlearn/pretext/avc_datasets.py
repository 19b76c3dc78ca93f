"""AVC datasets: model inputs (frames at the model's size, log-spectrograms) over the pairs of
:mod:`avlearn.pretext.avc`, from records decoded once into memory (``InMemoryAVC``, with
``decode_records``) or streamed from prepared shards (``StreamingAVC``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from avlearn.data.segments import SegmentRecord, SegmentRef
from avlearn.pretext.augment import crop_flip
from avlearn.pretext.avc import CorrespondencePairs, PairIndex

log = logging.getLogger(__name__)

CROP_MIN_AREA = 0.6  # smallest random crop, as a fraction of the frame area (crop_flip's default)


def _decode_chunk(src: Any, kwargs: dict[str, Any]) -> list[SegmentRecord]:
    from avlearn.data.segments import load_segment_records

    return load_segment_records(src, **kwargs)


def decode_records(
    src: str, *, size_px: tuple[int, int], sample_rate_hz: int, segment_sec: float, hop_sec: float | None = None, workers: int = 1
) -> list[SegmentRecord]:
    """Every segment of a raw source, decoded once (clips split over ``workers`` processes; order kept).

    ``hop_sec``: distance between wanted segment starts (default ``segment_sec``; ``segment_sec / N``
    gives the N jitter candidates per slot of :class:`CorrespondencePairs`).
    """
    from avlearn.data.sources import Source, load_source

    kwargs = dict(size_px=size_px, sample_rate_hz=sample_rate_hz, segment_sec=segment_sec, hop_sec=hop_sec or segment_sec)
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
    :class:`avlearn.pretext.avc.CorrespondencePairs` (``pairs``, or one built over ``records``
    with ``jitter`` candidates per slot), the crop from a generator seeded alike. Positives'
    and negatives' audio are rows of the one spectrogram table ``specs``; every frame gets
    the same augmentation whatever its label.
    """

    def __init__(
        self,
        records: list[SegmentRecord],
        preprocessing: dict[str, Any],
        *,
        seed: int,
        augment: bool,
        hard_negatives: float,
        fixed: bool,
        jitter: int = 1,
        pairs: CorrespondencePairs | None = None,
    ) -> None:
        from avlearn.embed.preprocess import Preprocessor

        self.pre = Preprocessor.from_config(preprocessing)
        self.pairs = pairs or CorrespondencePairs(records, seed=seed, hard_negatives=hard_negatives, per_slot=jitter)
        self.frames = np.stack([r.frame for r in records])  # (N, H, W, 3) uint8
        self.specs = self.spectrograms(np.stack([r.audio for r in records]))  # type: ignore[misc]  # (N, 1, F, T)
        self.seed, self.augment, self.fixed = seed, augment, fixed
        self.epoch = 0

    def spectrograms(self, waves: np.ndarray) -> torch.Tensor:
        """(N, samples) float32 → (N, 1, F, T) model features, in chunks."""
        return torch.cat([self.pre.audio(waves[i : i + 256]) for i in range(0, len(waves), 256)])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = 0 if self.fixed else int(epoch)
        self.pairs.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def audio_of(self, p: PairIndex) -> torch.Tensor:
        """The (1, F, T) audio input of pair ``p``."""
        return self.specs[p.audio_idx]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p = self.pairs.pair(i)
        frame = self.frames[p.frame_idx]
        if self.augment:
            frame = crop_flip(frame, np.random.default_rng([self.seed, self.epoch, i, 1]))
        return {"image": self.pre.image(frame), "audio": self.audio_of(p), "label": torch.tensor(p.label, dtype=torch.long)}


@dataclass(frozen=True)
class StreamItem:
    """One pair of :meth:`StreamingAVC.plan`: segment refs (decoded on demand), the label, the cursor
    after it (worker, group start, next pair) and the seed of its crop."""

    frame: SegmentRef
    audio: SegmentRef
    label: int
    kind: str
    cursor: tuple[int, int, int]
    crop_seed: tuple[int, ...]


class StreamingAVC(IterableDataset):
    """AVC samples streamed from prepared shards (or a large raw source), resumable at any sample.

    Readers: every DataLoader worker of every rank reads its own units (``order[reader::readers]``
    of a unit order shuffled by ``(seed, epoch)``; see :func:`avlearn.data.segments.reader_units`),
    so each shard is read once per epoch across ranks x workers.

    Order: a reader walks its units in *groups*: consecutive units until the group holds
    ``buffer`` segments and at least ``GROUP_UNITS`` units (or the reader's units run out). Every
    segment of a group (jitter candidates included) anchors one pair, in a permutation drawn from
    ``(seed, epoch, group)``; the reader's pairs alternate positive, negative (balanced within one).
    A negative's audio is drawn by :meth:`avlearn.pretext.avc.CorrespondencePairs.pair_of` over the
    group's segments: another video, matched on position class and candidate j, from another unit
    of the group where one matches (the pool spans several shards, so class-sorted shards do not
    give same-class negatives). Draws and the crop of segment ``k`` come from ``(group seed, epoch,
    k)``. Everything is a
    pure function of ``(seed, epoch, position)``: no shuffle buffer carries state, and a reader's
    *cursor* is just ``(group start, pairs of the group already given)``.

    Cursor: while training (``fixed`` False) every sample carries ``"_cursor"`` = (logical worker,
    group start, next pair) as a (3,) long tensor; the loop keeps the last one per worker and hands
    them back with :meth:`load_state_dict`, and the next pass continues there: the current group's
    shards are indexed again (tar headers and json members; for a raw source its clips are
    decoded again), nothing else. Loader worker ``w`` plays logical worker
    ``(w + last_worker + 1) % workers``, so the loader's round robin continues with the worker that
    was due next. A resume needs the same worker count.

    Frames: with ``augment`` they are decoded at the shards' stored size (raw sources: at the model
    size over sqrt of the smallest crop area), cropped, then resized to the model size once;
    without it, at the model size directly (the evaluation path).

    ``jitter`` = N candidates per slot: records are read at a hop of ``hop_sec`` (default
    ``segment_sec / N``; a shard dir must have been prepared with that hop).
    """

    GROUP_UNITS = 4
    shards_by_worker = True  # each DataLoader worker reads its own units: the training loop may give it workers

    def __init__(
        self,
        data: str,
        preprocessing: dict[str, Any],
        *,
        seed: int,
        rank: int,
        world_size: int,
        augment: bool,
        hard_negatives: float,
        buffer: int,
        fixed: bool,
        jitter: int = 1,
        hop_sec: float | None = None,
    ) -> None:
        from avlearn.embed.preprocess import Preprocessor

        self.data, self.preprocessing = data, preprocessing
        self.pre = Preprocessor.from_config(preprocessing)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.augment, self.hard_negatives, self.buffer, self.fixed = augment, hard_negatives, buffer, fixed
        self.jitter = jitter
        self.hop_sec = hop_sec or self.pre.segment_sec / jitter
        self.epoch = 0
        self._resume: dict[str, Any] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (a cursor handed over earlier is dropped)."""
        self.epoch = 0 if self.fixed else int(epoch)
        self._resume = None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue the current epoch from cursors: ``{"epoch", "workers", "cursors": {worker: [group start,
        next pair]}, "last_worker"}`` (the loop builds it from the ``"_cursor"`` of consumed samples)."""
        if state is not None and int(state["epoch"]) != self.epoch:
            raise ValueError(f"cursor of epoch {state['epoch']} handed to epoch {self.epoch}; call set_epoch first")
        self._resume = state

    def _decode_size(self) -> tuple[int, int] | None:
        from avlearn.data.sources import is_shard_dir

        if not self.augment:
            return self.pre.image_size_px
        if is_shard_dir(self.data):
            return None  # the stored size
        h, w = self.pre.image_size_px
        return (math.ceil(h / math.sqrt(CROP_MIN_AREA)), math.ceil(w / math.sqrt(CROP_MIN_AREA)))

    def _group(self, reader: Any, units: list[int], g0: int) -> tuple[list[Any], int]:
        """The segment refs of the group starting at ``units[g0]`` and the start of the next group."""
        refs: list[Any] = []
        g = g0
        while g < len(units) and (len(refs) < self.buffer or g - g0 < self.GROUP_UNITS):
            refs += reader.refs(units[g])
            g += 1
        return refs, g

    def plan(self, worker: int = 0, workers: int = 1, start: tuple[int, int] = (0, 0)) -> Iterator[StreamItem]:
        """The pairs logical data worker ``worker`` of ``workers`` (on this rank) gives this epoch, from
        cursor ``start`` = (group start, next pair); nothing is decoded (shard segments are refs)."""
        from avlearn.data.segments import UnitReader, reader_units
        from avlearn.pretext.avc import CorrespondencePairs

        reader = UnitReader(
            self.data, size_px=self._decode_size(), sample_rate_hz=self.pre.sample_rate_hz, segment_sec=self.pre.segment_sec, hop_sec=self.hop_sec
        )
        order = list(range(len(reader)))
        if not self.fixed:
            np.random.default_rng([self.seed, self.epoch, 3]).shuffle(order)
        me, readers = self.rank * workers + worker, self.world_size * workers
        units, stride = reader_units(len(order), me, readers, order)
        g0, skip = start
        while g0 < len(units):
            refs, g1 = self._group(reader, units, g0)
            gseed = int(np.random.SeedSequence([self.seed, self.epoch, units[g0], 5]).generate_state(1)[0])
            try:
                pairs = CorrespondencePairs(refs, seed=gseed, hard_negatives=self.hard_negatives, per_slot=self.jitter, units=[r.unit for r in refs])
            except ValueError as exc:  # a group of one video: no negatives
                log.warning("skipping units %s: %s", units[g0:g1], exc)
                g0, skip = g1, 0
                continue
            mine = np.random.default_rng([gseed, self.epoch]).permutation(len(refs))[me % stride :: stride]
            for i in range(skip, len(mine)):
                k = int(mine[i])
                p = pairs.pair_of(k, i % 2 == 0, np.random.default_rng([gseed, self.epoch, k]))
                yield StreamItem(refs[p.frame_idx], refs[p.audio_idx], p.label, p.kind, (worker, g0, i + 1), (gseed, self.epoch, k, 1))
            g0, skip = g1, 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        resume = self._resume
        if resume is not None and int(resume["workers"]) != workers:
            raise ValueError(f"the cursor was saved with {resume['workers']} data worker(s); resume with that many (--workers {resume['workers']})")
        logical = wid if resume is None else (wid + int(resume["last_worker"]) + 1) % workers
        start = (0, 0) if resume is None else tuple(resume["cursors"].get(logical, (0, 0)))
        for item in self.plan(logical, workers, start):  # type: ignore[arg-type]
            sample = self._sample(item)
            if not self.fixed:
                sample["_cursor"] = torch.tensor(item.cursor, dtype=torch.long)
            yield sample

    def _sample(self, item: StreamItem) -> dict[str, torch.Tensor]:
        anchor = item.frame.load(audio=item.label == 1)
        wave = anchor.audio if item.label == 1 else item.audio.load(frame=False).audio
        frame = crop_flip(anchor.frame, np.random.default_rng(item.crop_seed), min_area=CROP_MIN_AREA) if self.augment else anchor.frame
        return {"image": self.pre.image(frame), "audio": self.pre.spectrogram(wave), "label": torch.tensor(item.label, dtype=torch.long)}
