"""Task "colorization" (Vondrick et al. 2018); its evaluation (DAVIS J&F) is avlearn.eval.tracking.

Training: clips of ``num_refs + 1`` grey frames; the model points from the last
frame into the references and copies their quantised colours; loss = cross-entropy
against the target frame's own quantised colours (optionally class-rebalanced).
The k-means ab centres are fitted on training frames when the dataset is made
(deterministic for the seed) and stored in the model (buffer + preprocessing), so
they travel with every checkpoint.

Data: a raw source or DAVIS folder is decoded once into memory (every clip start of every
sequence is one item; the loop's sampler deals the items to ranks). A frame shard dir
(``avlearn prepare --kind frames``) is streamed shard by shard (:class:`ColorizationStream`):
an epoch is ``clips_per_sequence`` clips of every training sequence, each rank reads its own
shards once, at most ``max_shards`` shards held per data reader; the colour clusters are fitted
on the sequences of ``max_shards`` shards.

Options: :class:`ColorizationOptions` (``--set key=value``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avlearn.config import opt
from training.tasks.base import Task, register_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColorizationOptions:
    """``--set`` options of colorization."""

    frame_step_sec: float | None = opt(None, "time between clip frames (default: the preset's, 0.2 s)")
    decode_short_px: int | None = opt(None, "decoded short side in px (default: 1.25 x the crop side)")
    max_frames: int = opt(300, "frames kept per sequence")
    folder_fps: float = opt(24.0, "frame rate assumed for folders of frames")
    val_fraction: float = opt(0.1, "the last fraction of each sequence's frames used for validation")
    rebalance: bool = opt(False, "weight the loss by inverse colour frequency (Zhang et al. 2016)")
    clips_per_sequence: int = opt(32, "frame shards: training clips of each sequence per epoch (an epoch = one pass over every sequence)")
    val_clips: int = opt(256, "frame shards: fixed validation clips (spread over the sequences' last frames)")
    max_shards: int = opt(2, "frame shards: shards held in memory at once per data reader")


@register_task
class ColorizationTask(Task):
    name = "colorization"
    default_model = "colorizer"
    best_metric = ("loss", "min")
    Options = ColorizationOptions

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self._cache: dict[tuple, list] = {}
        self._class_weights: torch.Tensor | None = None

    def _sequences(self, data: str, model: torch.nn.Module) -> list:
        from avlearn.pretext.colorization import load_sequences

        cfg = model.model_config
        step = self.opts.frame_step_sec or float(cfg["frame_step_sec"])
        short = self.opts.decode_short_px or int(round(1.25 * max(cfg["image_size_px"])))
        key = (data, step, short)
        if key not in self._cache:
            t0 = time.perf_counter()
            seqs = load_sequences(data, frame_step_sec=step, short_px=short, folder_fps=self.opts.folder_fps, max_frames=self.opts.max_frames)
            if not seqs:
                raise FileNotFoundError(f"no decodable video or frame folder in {data!r}")
            log.info("colorization: %d sequences, %d frames decoded in %.1f s", len(seqs), sum(len(s.frames) for s in seqs), time.perf_counter() - t0)
            self._cache[key] = seqs
        return self._cache[key]

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> torch.utils.data.Dataset:
        from avlearn.data.frame_shards import is_frame_shard_dir
        from avlearn.pretext.colorization import ColorizationClips, split_sequences

        if is_frame_shard_dir(data):
            return self._stream(str(data), model, split=split, seed=seed, rank=rank, world_size=world_size)
        cfg = model.model_config
        t = int(cfg["num_refs"]) + 1
        seqs = split_sequences(self._sequences(data, model), split, val_fraction=self.opts.val_fraction, num_frames=t)
        if split == "val" and not seqs:
            raise LookupError("sequences too short for a validation split")
        self._fit(model, seqs, split, seed)
        # every rank holds every item: the loop's sampler deals them out (no second sharding here)
        return ColorizationClips(seqs, num_frames=t, size_px=tuple(cfg["image_size_px"]), augment=split == "train")

    def _fit(self, model: torch.nn.Module, seqs: Sequence, split: str, seed: int) -> None:
        """Colour clusters (and the rebalancing weights) from training sequences ``seqs``."""
        from avlearn.color import fit_ab_kmeans
        from avlearn.pretext.colorization import sample_ab

        if not model.is_fitted:
            if split != "train":
                raise RuntimeError("fit the colour clusters on the training split first")
            centres = fit_ab_kmeans(sample_ab(seqs, seed=seed), int(model.model_config["num_colors"]), seed=seed)
            model.set_color_centers(torch.from_numpy(centres))
            log.info("colorization: fitted %d ab clusters", len(centres))
        if split == "train" and self.opts.rebalance:
            self._class_weights = _class_weights(model, seqs, seed)

    def _stream(self, src: str, model: torch.nn.Module, *, split: str, seed: int, rank: int, world_size: int) -> torch.utils.data.Dataset:
        """Clips streamed from a frame shard dir (the time split of each sequence)."""
        from avlearn.pretext.colorization import ColorizationStream, shard_clip_refs, shard_fit_sequences

        cfg = model.model_config
        t = int(cfg["num_refs"]) + 1
        step = self.opts.frame_step_sec or float(cfg["frame_step_sec"])
        short = self.opts.decode_short_px or int(round(1.25 * max(cfg["image_size_px"])))
        common = {"frame_step_sec": step, "num_frames": t, "val_fraction": self.opts.val_fraction}
        refs = shard_clip_refs(src, split, max_frames=self.opts.max_frames, **common)
        if not refs:
            if split == "val":
                raise LookupError("sequences too short for a validation split")
            raise FileNotFoundError(f"no sequence of {src} is long enough for a clip of {t} frames {step} s apart")
        if split == "train" and (not model.is_fitted or self.opts.rebalance):
            seqs = shard_fit_sequences(src, refs, seed=seed, max_shards=self.opts.max_shards, short_px=short, **common)
            self._fit(model, seqs, split, seed)
            del seqs
        elif not model.is_fitted:
            raise RuntimeError("fit the colour clusters on the training split first")
        if split == "train":
            stream = {"per_sequence": self.opts.clips_per_sequence, "seed": seed, "shuffle": True, "fixed": False}
        else:
            stream = {"per_sequence": -(-self.opts.val_clips // len(refs)), "seed": seed + 1, "shuffle": False, "fixed": True}
        return ColorizationStream(
            src, refs, split=split, size_px=tuple(cfg["image_size_px"]), short_px=short, max_frames=self.opts.max_frames, augment=split == "train",
            rank=rank, world_size=world_size, max_shards=self.opts.max_shards, **stream, **common,
        )  # fmt: skip

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch["frames"])
        log_probs, target = out["log_probs"], out["target"]
        weight = self._class_weights.to(log_probs.device) if self._class_weights is not None else None
        loss = F.nll_loss(log_probs.float(), target, weight=weight)
        with torch.no_grad():
            acc = (log_probs.argmax(1) == target).float().mean()
        return {"loss": loss, "acc": acc}


def _class_weights(model: torch.nn.Module, seqs: Sequence, seed: int, lam: float = 0.5) -> torch.Tensor:
    """Inverse-frequency colour weights mixed with uniform (Zhang et al. 2016), mean 1 under the prior."""
    from avlearn.color import quantize_ab
    from avlearn.pretext.colorization import sample_ab

    ab = sample_ab(seqs, seed=seed + 1)
    counts = torch.bincount(quantize_ab(ab, model.ab_centers, dim=-1), minlength=model.ab_centers.shape[0]).float()
    prior = counts / counts.sum()
    w = 1.0 / ((1 - lam) * prior + lam / len(prior))
    return w / (prior * w).sum()
