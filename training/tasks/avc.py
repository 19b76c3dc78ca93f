"""Task "avc": audio-visual correspondence for AVE-Net and AVOL-Net (evaluation: avlearn.eval.avc).

Options: :class:`AVCOptions` (``--set key=value``). Datasets: ``avlearn.pretext.avc``.

Samples: {"image": (3, H, W) float normalised, "audio": (1, F, T) log features, "label": 0/1 long},
made with the model's own :class:`avlearn.embed.preprocess.Preprocessor`.
Loss: AVE-Net cross-entropy on ``logits`` (B, 2); AVOL-Net BCE-with-logits on ``logit`` (B,).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from avlearn.config import opt
from avlearn.pretext.avc_datasets import InMemoryAVC, StreamingAVC, decode_records
from avlearn.pretext.temporal import split_source
from training.tasks.base import Task, register_task

log = logging.getLogger(__name__)

# Training start candidates per 1 s slot under jitter=auto (raw sources): starts every ~0.25 s on the
# frame grid, 4x the distinct positive windows of the fixed grid for 4x the decoded frames in memory.
DEFAULT_JITTER = 4


@dataclass(frozen=True)
class AVCOptions:
    """``--set`` options of avc."""

    model: Literal["ave_net", "avol_net"] = opt("ave_net", "which network")
    hard_negatives: bool | float = opt(False, "fraction of negatives from the same video >= 2 s away (true = 0.5)")
    augment: bool = opt(True, "random crops (60-100% of the area) and horizontal flips of training frames")
    in_memory: Literal["auto", "true", "false"] = opt(
        "auto", "keep decoded segments in memory; auto = yes for raw sources of <= max_memory_clips clips, else stream (groups of shards, resumable by cursor)"
    )
    max_memory_clips: int = opt(2000, "largest raw source decoded into memory under in_memory=auto")
    buffer: int = opt(1024, "segments per group of the streaming form (the pool of its pairs and negatives)")
    decode_workers: int = opt(min(4, os.cpu_count() or 1), "processes decoding an in-memory source")
    jitter: int | Literal["auto"] = opt(
        "auto",
        f"training start candidates per 1 s slot, on the clip's frame grid (1 = the fixed segment grid); "
        f"auto = {DEFAULT_JITTER} for raw sources, the prepared hop for shard dirs",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.hard_negative_fraction <= 1.0:
            raise ValueError(f"hard_negatives must be true/false or a fraction in [0, 1], got {self.hard_negatives!r}")
        if self.jitter != "auto" and not 1 <= int(self.jitter) <= 100:
            raise ValueError(f"jitter must be auto or a count in 1..100, got {self.jitter!r}")

    @property
    def hard_negative_fraction(self) -> float:
        if isinstance(self.hard_negatives, bool):
            return 0.5 if self.hard_negatives else 0.0
        return float(self.hard_negatives)


def shard_jitter(shards: str, segment_sec: float, want: int | str) -> tuple[int, float]:
    """(jitter, hop_sec) of a prepared shard dir: its records lie every ``hop_sec`` (``segment_sec / jitter``).

    Raises:
        ValueError: ``want`` (an explicit jitter) is not what the shards were prepared with.
    """
    from avlearn.data.shards import read_prepare_config

    hop = float(read_prepare_config(Path(shards))["params"]["hop_sec"])
    have = max(1, int(round(segment_sec / hop)))
    if abs(have * hop - segment_sec) > 1e-6:
        have = 1  # a hop that does not divide the segment: every record is its own slot
    if want != "auto" and int(want) != have:
        raise ValueError(
            f"jitter={want} needs shards prepared with --hop-sec {segment_sec / int(want):g}; {shards} has hop_sec={hop:g}: "
            f"re-run avlearn prepare with --hop-sec {segment_sec / int(want):g}, or set jitter={have}"
        )
    return have, hop


@register_task
class AVCTask(Task):
    """Audio-visual correspondence: does this 1 s of sound go with this frame?"""

    name = "avc"
    default_model = "ave_net"
    best_metric = ("loss", "min")
    Options = AVCOptions

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self._train_data: str | None = None

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        from avlearn.data.sources import is_shard_dir, load_source

        if split == "train":
            self._train_data = str(data)
        src = split_source(data, split, self._train_data)
        train = split == "train"
        o = self.opts
        hard = o.hard_negative_fraction if train else 0.0
        pre = model.preprocessing
        size = tuple(pre["image_size_px"])
        sr = int(pre["audio"]["sample_rate_hz"])
        seg = float(pre["audio"]["duration_sec"])
        stream = o.in_memory == "false"
        if o.in_memory == "auto":
            stream = is_shard_dir(src) or len(load_source(src).spans) > o.max_memory_clips
        if is_shard_dir(src):
            jitter, hop = shard_jitter(src, seg, o.jitter)
        else:
            jitter = (DEFAULT_JITTER if o.jitter == "auto" else int(o.jitter)) if train else 1  # validation: the fixed grid, as the evaluation
            hop = seg / jitter
        if stream:
            log.info("avc %s: streaming %s (jitter %d)", split, src, jitter)
            return StreamingAVC(
                src, pre, seed=seed, rank=rank, world_size=world_size, augment=o.augment and train, hard_negatives=hard, buffer=o.buffer, fixed=not train,
                jitter=jitter, hop_sec=hop,
            )  # fmt: skip
        records = decode_records(src, size_px=size, sample_rate_hz=sr, segment_sec=seg, hop_sec=hop, workers=o.decode_workers)
        # in memory, every rank keeps all records: the loop's sampler deals the pair indices out to ranks
        log.info("avc %s: %d segments (jitter %d) of %d videos in memory from %s", split, len(records), jitter, len({r.clip_id for r in records}), src)
        if not train and len({r.clip_id for r in records}) < 2:
            # the loop then trains without validation (LookupError = "no usable split")
            raise LookupError(f"the {split} split {src} has fewer than two videos: no correspondence pairs")
        return InMemoryAVC(records, pre, seed=seed + (0 if train else 1), augment=o.augment and train, hard_negatives=hard, fixed=not train, jitter=jitter)

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
