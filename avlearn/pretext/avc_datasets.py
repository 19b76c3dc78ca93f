"""AVC datasets: model inputs (frames at the model's size, log-spectrograms) over the pairs of
:mod:`avlearn.pretext.avc`, from records decoded once into memory (``InMemoryAVC``, with
``decode_records``) or streamed from prepared shards (``StreamingAVC``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from avlearn.data.segments import SegmentRecord
from avlearn.pretext.augment import crop_flip
from avlearn.pretext.avc import CorrespondencePairs, PairIndex, stream_pairs


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


class StreamingAVC(IterableDataset):
    """AVC samples from a record stream (shards or a large raw source), paired through a shuffle buffer.

    ``jitter`` = N candidates per slot: records are read at a hop of ``hop_sec`` (default
    ``segment_sec / N``; a shard dir must have been prepared with that hop).
    """

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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = 0 if self.fixed else int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from avlearn.data.segments import iter_segment_records

        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        records = iter_segment_records(
            self.data,
            size_px=self.pre.image_size_px,
            sample_rate_hz=self.pre.sample_rate_hz,
            segment_sec=self.pre.segment_sec,
            hop_sec=self.hop_sec,
            shuffle=not self.fixed,
            seed=self.seed + self.epoch,
            shard_slice=(self.rank, self.world_size),
        )
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, wid, 2])
        pairs = stream_pairs(records, seed=int(rng.integers(2**31)), buffer_size=self.buffer, hard_negatives=self.hard_negatives, per_slot=self.jitter)
        for pair in pairs:
            frame = crop_flip(pair.frame.frame, rng) if self.augment else pair.frame.frame
            yield {"image": self.pre.image(frame), "audio": self.pre.spectrogram(pair.audio.audio), "label": torch.tensor(pair.label, dtype=torch.long)}
