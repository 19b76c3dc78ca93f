"""Task "avc": audio-visual correspondence for AVE-Net and AVOL-Net, and `avlearn eval avc`.

Options (``--set key=value``):
    model=ave_net|avol_net     which network (default ave_net)
    hard_negatives=false|true|F   fraction F of negatives from the same video >= 2 s away (true = 0.5)
    augment=true|false         random crops (60-100% of the area) and horizontal flips of training frames
    in_memory=auto|true|false  decode every segment once and keep frames (at the model's size) and
                               spectrograms in memory; auto = yes for raw sources of <= max_memory_clips clips,
                               streaming (shuffle-buffer pairing) for shard dirs and larger sources
    max_memory_clips=N         (default 2000)
    buffer=N                   shuffle/pairing buffer of the streaming form (default 1024)
    decode_workers=N           processes decoding an in-memory source (default min(4, CPUs))

Samples: {"image": (3, H, W) float normalised, "audio": (1, F, T) log features, "label": 0/1 long},
made with the model's own :class:`avlearn.embed.preprocess.Preprocessor`.
Loss: AVE-Net cross-entropy on ``logits`` (B, 2); AVOL-Net BCE-with-logits on ``logit`` (B,).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, IterableDataset

from avlearn.data.segments import SegmentRecord
from avlearn.pretext import resolve_split
from training.augment import crop_flip
from training.tasks.base import FALSE_WORDS, TRUE_WORDS, Task, option_flag, register_eval, register_task

log = logging.getLogger(__name__)

def hard_negative_fraction(value: str | None) -> float:
    """``--set hard_negatives=`` → fraction of negatives from the same video."""
    if value is None:
        return 0.0
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return 0.5
    if v in FALSE_WORDS:
        return 0.0
    f = float(v)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"hard_negatives must be true/false or a fraction in [0, 1], got {value!r}")
    return f


# ---------------------------------------------------------------- datasets


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
            self.data, size_px=self.pre.image_size_px, sample_rate_hz=self.pre.sample_rate_hz, segment_sec=self.pre.segment_sec,
            shuffle=not self.fixed, seed=self.seed + self.epoch, shard_slice=(self.rank, self.world_size),
        )
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, wid, 2])
        for pair in stream_pairs(records, seed=int(rng.integers(2**31)), buffer_size=self.buffer, hard_negatives=self.hard_negatives):
            frame = crop_flip(pair.frame.frame, rng) if self.augment else pair.frame.frame
            yield {"image": self.pre.image(frame), "audio": self.pre.spectrogram(pair.audio.audio), "label": torch.tensor(pair.label, dtype=torch.long)}


# ---------------------------------------------------------------- the task


@register_task
class AVCTask(Task):
    """Audio-visual correspondence: does this 1 s of sound go with this frame?"""

    name = "avc"
    default_model = "ave_net"
    best_metric = ("loss", "min")

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        known = {"model", "hard_negatives", "augment", "in_memory", "max_memory_clips", "buffer", "decode_workers"}
        unknown = set(self.options) - known
        if unknown:
            raise ValueError(f"unknown avc option(s) {sorted(unknown)}; known: {sorted(known)}")
        if self.options.get("model", self.default_model) not in ("ave_net", "avol_net"):
            raise ValueError(f"avc trains ave_net or avol_net, not {self.options['model']!r}")
        self.hard_negatives = hard_negative_fraction(self.options.get("hard_negatives"))
        self.augment = option_flag(self.options.get("augment"), True)
        self.in_memory = self.options.get("in_memory", "auto").lower()
        self.max_memory_clips = int(self.options.get("max_memory_clips", 2000))
        self.buffer = int(self.options.get("buffer", 1024))
        self.decode_workers = int(self.options.get("decode_workers", min(4, os.cpu_count() or 1)))
        self._train_data: str | None = None

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        from avlearn.data.sources import is_shard_dir, load_source

        if split == "train":
            self._train_data = str(data)
        # --val-data given apart from --data: use it as it is unless it has its own splits
        explicit = split != "train" and self._train_data is not None and str(data) != self._train_data
        try:
            src = resolve_split(data, split)
        except FileNotFoundError:
            if not explicit:
                raise
            src = str(data)
        train = split == "train"
        pre = model.preprocessing
        size = tuple(pre["image_size_px"])
        sr = int(pre["audio"]["sample_rate_hz"])
        seg = float(pre["audio"]["duration_sec"])
        stream = self.in_memory in FALSE_WORDS
        if self.in_memory == "auto":
            stream = is_shard_dir(src) or len(load_source(src).spans) > self.max_memory_clips
        if stream:
            log.info("avc %s: streaming %s", split, src)
            return StreamingAVC(
                src, pre, seed=seed, rank=rank, world_size=world_size, augment=self.augment and train,
                hard_negatives=self.hard_negatives if train else 0.0, buffer=self.buffer, fixed=not train,
            )
        records = decode_records(src, size_px=size, sample_rate_hz=sr, segment_sec=seg, workers=self.decode_workers)
        # in memory, every rank keeps all records: the loop's sampler deals the pair indices out to ranks
        log.info("avc %s: %d segments of %d videos in memory from %s", split, len(records), len({r.clip_id for r in records}), src)
        if not train and len({r.clip_id for r in records}) < 2:
            # the loop then trains without validation (LookupError = "no usable split")
            raise LookupError(f"the {split} split {src} has fewer than two videos: no correspondence pairs")
        return InMemoryAVC(records, pre, seed=seed + (0 if train else 1), augment=self.augment and train, hard_negatives=self.hard_negatives if train else 0.0, fixed=not train)

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch["image"], batch["audio"])
        label = batch["label"]
        if "logits" in out:  # AVE-Net
            logits = out["logits"].float()
            loss = F.cross_entropy(logits, label)
            pred = logits.argmax(dim=1)
        else:  # AVOL-Net
            logit = out["logit"].float()
            loss = F.binary_cross_entropy_with_logits(logit, label.float())
            pred = (logit > 0).long()
        return {"loss": loss, "acc": (pred == label).float().mean().detach()}


@register_eval("avc")
def eval_avc(
    checkpoint: str,
    data: str,
    split: str = "test",
    boxes: str | None = None,
    labels: str | None = None,
    ontology: str | None = None,
    localizer: str | None = None,
    random_weights: bool = False,
    max_segments: int = 2000,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """AVC accuracy, cross-modal and within-modal retrieval, and LVS localization of a checkpoint."""
    from avlearn.eval.avc import evaluate_avc

    return evaluate_avc(
        checkpoint, data, split=split, boxes=boxes, labels=labels, ontology=ontology, localizer=localizer,
        random_weights=random_weights, max_segments=max_segments, seed=seed, device=device,
    )
