"""Task "colorization" (Vondrick et al. 2018); its evaluation (DAVIS J&F) is avlearn.eval.tracking.

Training: clips of ``num_refs + 1`` grey frames; the model points from the last
frame into the references and copies their quantised colours; loss = cross-entropy
against the target frame's own quantised colours (optionally class-rebalanced).
The k-means ab centres are fitted on training frames when the dataset is made
(deterministic for the seed) and stored in the model (buffer + preprocessing), so
they travel with every checkpoint.

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
        from avlearn.color import fit_ab_kmeans
        from avlearn.pretext.colorization import ColorizationClips, sample_ab, split_sequences

        cfg = model.model_config
        t = int(cfg["num_refs"]) + 1
        seqs = split_sequences(self._sequences(data, model), split, val_fraction=self.opts.val_fraction, num_frames=t)
        if split == "val" and not seqs:
            raise LookupError("sequences too short for a validation split")
        if not model.is_fitted:
            if split != "train":
                raise RuntimeError("fit the colour clusters on the training split first")
            centres = fit_ab_kmeans(sample_ab(seqs, seed=seed), int(cfg["num_colors"]), seed=seed)
            model.set_color_centers(torch.from_numpy(centres))
            log.info("colorization: fitted %d ab clusters", len(centres))
        if split == "train" and self.opts.rebalance:
            self._class_weights = _class_weights(model, seqs, seed)
        seqs = seqs[rank::world_size] if len(seqs) >= world_size else seqs
        return ColorizationClips(seqs, num_frames=t, size_px=tuple(cfg["image_size_px"]), augment=split == "train")

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
