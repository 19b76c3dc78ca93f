"""The shortcut audit's pairs (``avlearn audit shortcuts``, runner in :mod:`training.audit`): pairs whose
audio comes from another video for both labels, the naive second loader, and the audit's task (the
avc task on those pairs). See the runner's docstring and docs/audit.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from avlearn.config import opt
from avlearn.data.segments import SegmentRecord
from avlearn.pretext.avc import CorrespondencePairs, PairIndex
from avlearn.pretext.avc_datasets import InMemoryAVC, decode_records
from training.tasks.avc import DEFAULT_JITTER, AVCOptions, AVCTask

log = logging.getLogger(__name__)

AUDIT_TASK = "avc_shortcut_audit"
SAMPLERS = ("matched", "naive")
DECOY = "decoy_positive"
CHANCE = 0.5
CHANCE_MARGIN = 0.05
NAIVE_LOADER_HZ = 22050
HELDOUT_SPLITS = ("val", "test", "test_seen", "test_unseen_categories")


class AuditError(ValueError):
    """The audit cannot run on these settings or this data (a user mistake; the message names the fix)."""


# ---------------------------------------------------------------- pairs and samplers


class NoCorrespondencePairs(CorrespondencePairs):
    """:class:`CorrespondencePairs` whose label-1 pairs also take their audio from another video.

    Label-0 pairs are the project's negatives unchanged; a label-1 pair keeps the positive's
    frame (its jitter candidate included) and draws its audio with the same matched rule as a
    negative, from its own random stream. Labels stay exactly balanced.
    """

    def pair(self, i: int, epoch: int | None = None) -> PairIndex:
        p = super().pair(i, epoch)
        if p.label == 0:
            return p
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, i, 3])
        return PairIndex(p.frame_idx, self.matched_audio(p.frame_idx, rng), 1, DECOY)


def naive_windows(records: list[SegmentRecord], *, per_slot: int, sample_rate_hz: int, segment_sec: float, seed: int) -> np.ndarray:
    """(N, round(segment_sec * sample_rate_hz)) float32: each record's audio through the naive loader.

    Per clip, the soundtrack is decoded once at ``NAIVE_LOADER_HZ``; record k's window starts at
    an arbitrary time, uniform in [its start, its start + segment_sec / per_slot) (kept inside the
    audio), and is linearly interpolated to ``sample_rate_hz``.
    """
    from avlearn.media import read_audio

    n = int(round(segment_sec * sample_rate_hz))
    out = np.zeros((len(records), n), np.float32)
    by_path: dict[str, list[int]] = {}
    for k, r in enumerate(records):
        by_path.setdefault(r.path, []).append(k)
    hop_sec = segment_sec / per_slot
    for path, ks in by_path.items():
        wave = read_audio(path, 0.0, None, NAIVE_LOADER_HZ)
        src_sec = np.arange(wave.shape[0]) / NAIVE_LOADER_HZ
        latest = max(0.0, wave.shape[0] / NAIVE_LOADER_HZ - segment_sec)
        for k in ks:
            start = min(records[k].start_sec + np.random.default_rng([seed, k]).uniform(0.0, hop_sec), latest)
            out[k] = np.interp(start + np.arange(n) / sample_rate_hz, src_sec, wave, left=0.0, right=0.0)
    return out


class AuditAVC(InMemoryAVC):
    """Audit samples: :class:`NoCorrespondencePairs` over decoded records, the avc task's frames and
    augmentation; with ``sampler="naive"`` label-1 audio comes from :func:`naive_windows`."""

    def __init__(
        self, records: list[SegmentRecord], preprocessing: dict[str, Any], *, sampler: str, seed: int, augment: bool, fixed: bool, jitter: int
    ) -> None:
        if sampler not in SAMPLERS:
            raise AuditError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        pairs = NoCorrespondencePairs(records, seed=seed, per_slot=jitter)
        super().__init__(records, preprocessing, seed=seed, augment=augment, hard_negatives=0.0, fixed=fixed, jitter=jitter, pairs=pairs)
        self.sampler = sampler
        self.clip_ids = sorted({r.clip_id for r in records})
        self.naive_specs: torch.Tensor | None = None
        if sampler == "naive":
            waves = naive_windows(records, per_slot=jitter, sample_rate_hz=self.pre.sample_rate_hz, segment_sec=self.pre.segment_sec, seed=seed)
            self.naive_specs = self.spectrograms(waves)

    def audio_of(self, p: PairIndex) -> torch.Tensor:
        if self.naive_specs is not None and p.label == 1:
            return self.naive_specs[p.audio_idx]
        return self.specs[p.audio_idx]


@dataclass(frozen=True)
class AuditOptions(AVCOptions):
    """The avc options plus the audit's sampler."""

    sampler: Literal["matched", "naive"] = opt("matched", "matched: the project's path for both labels; naive: label-1 audio through a second loader")


def audit_dataset(src: str, preprocessing: dict[str, Any], opts: AuditOptions, *, seed: int, train: bool) -> AuditAVC:
    """Audit samples over every clip of ``src`` (decoded like the avc task's in-memory form)."""
    seg = float(preprocessing["audio"]["duration_sec"])
    jitter = DEFAULT_JITTER if opts.jitter == "auto" else int(opts.jitter)
    records = decode_records(
        src,
        size_px=tuple(preprocessing["image_size_px"]),
        sample_rate_hz=int(preprocessing["audio"]["sample_rate_hz"]),
        segment_sec=seg,
        hop_sec=seg / jitter,
        workers=opts.decode_workers,
    )
    clips = len({r.clip_id for r in records})
    if clips < 2:
        raise AuditError(f"{src}: {clips} clip(s) gave segments with audio; the audit needs at least two per part")
    return AuditAVC(records, preprocessing, sampler=opts.sampler, seed=seed, augment=opts.augment and train, fixed=not train, jitter=jitter)


class ShortcutAuditTask(AVCTask):
    """The avc task (model, loss, options) on audit pairs; registered only by :func:`run_audit`."""

    name = AUDIT_TASK
    Options = AuditOptions

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> AuditAVC:
        if split != "train":
            raise LookupError("the audit scores its held-out videos itself")
        return audit_dataset(data, model.preprocessing, self.opts, seed=seed, train=True)


def ensure_task() -> None:
    from training.tasks.base import list_tasks, register_task

    if AUDIT_TASK not in list_tasks():
        register_task(ShortcutAuditTask)
