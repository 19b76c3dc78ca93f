"""Task "colorization" (Vondrick et al. 2018) and the "tracking" evaluation (DAVIS J&F).

Training: clips of ``num_refs + 1`` grey frames; the model points from the last
frame into the references and copies their quantised colours; loss = cross-entropy
against the target frame's own quantised colours (optionally class-rebalanced).
The k-means ab centres are fitted on training frames when the dataset is made
(deterministic for the seed) and stored in the model (buffer + preprocessing), so
they travel with every checkpoint.

Options (``--set key=value``):
    frame_step_sec: time between clip frames (default: the preset's, 0.2 s).
    decode_short_px: decoded short side (default: 1.25 x the crop side).
    max_frames: frames kept per sequence (default 300).
    folder_fps: frame rate assumed for folders of frames (default 24).
    val_fraction: the last fraction of each sequence's frames used for validation (default 0.1).
    rebalance: "1" to weight the loss by inverse colour frequency (Zhang et al.), default "0".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from training.tasks.base import Task, register_eval, register_task

log = logging.getLogger(__name__)


@register_task
class ColorizationTask(Task):
    name = "colorization"
    default_model = "colorizer"
    best_metric = ("loss", "min")

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self._cache: dict[tuple, list] = {}
        self._class_weights: torch.Tensor | None = None

    def _opt(self, key: str, default: Any, cast: type) -> Any:
        value = self.options.get(key)
        return default if value is None else cast(value)

    def _sequences(self, data: str, model: torch.nn.Module) -> list:
        from avlearn.pretext.colorization import load_sequences

        cfg = model.model_config
        step = self._opt("frame_step_sec", float(cfg["frame_step_sec"]), float)
        short = self._opt("decode_short_px", int(round(1.25 * max(cfg["image_size_px"]))), int)
        key = (data, step, short)
        if key not in self._cache:
            t0 = time.perf_counter()
            seqs = load_sequences(
                data, frame_step_sec=step, short_px=short, folder_fps=self._opt("folder_fps", 24.0, float), max_frames=self._opt("max_frames", 300, int)
            )
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
        seqs = split_sequences(self._sequences(data, model), split, val_fraction=self._opt("val_fraction", 0.1, float), num_frames=t)
        if split == "val" and not seqs:
            raise LookupError("sequences too short for a validation split")
        if not model.is_fitted:
            if split != "train":
                raise RuntimeError("fit the colour clusters on the training split first")
            centres = fit_ab_kmeans(sample_ab(seqs, seed=seed), int(cfg["num_colors"]), seed=seed)
            model.set_color_centers(torch.from_numpy(centres))
            log.info("colorization: fitted %d ab clusters", len(centres))
        if split == "train" and self._opt("rebalance", 0, int):
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


# ---------------------------------------------------------------- evaluation


def evaluate_tracking(
    davis_root: str,
    *,
    checkpoint: str | None = None,
    sequences: Sequence[str] | None = None,
    resolution: str = "480p",
    topk: int = 10,
    radius: int = 12,
    refs: int = 3,
    scale: float = 1.0,
    temperature: float | None = None,
    baselines: bool = True,
    save_masks: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """J and F of mask propagation on DAVIS-layout sequences, for a checkpoint and the two baselines.

    Methods: "model" (the checkpoint's embeddings; skipped without a checkpoint),
    "lab" (raw Lab pixels at the same stride) and "copy" (the first mask on every frame).

    Returns:
        {"methods": {name: {"J", "F", "J&F", "sequences": {seq: {"J", "F", "J&F", ...}}, "frames_per_sec"}},
         "settings": {...}, "checkpoint": ...}
    """
    from tqdm import tqdm

    from avlearn.eval.davis import evaluate_sequence, list_sequences, load_sequence, summarize, write_mask
    from avlearn.track import TrackConfig, copy_first_mask, lab_features, load_features, propagate_masks

    names = list(sequences) if sequences else list_sequences(davis_root, resolution)
    if not names:
        raise FileNotFoundError(f"{davis_root}: no sequences")
    cfg = TrackConfig(topk=topk, radius=radius, refs=refs, temperature=temperature, scale=scale, device=device)
    methods: dict[str, Any] = {}
    if checkpoint:
        methods["model"] = load_features(checkpoint, device=device)
    if baselines or not checkpoint:
        stride = int(methods["model"].stride) if "model" in methods else 4
        methods["lab"] = lab_features(stride)
        methods["copy"] = None
    results: dict[str, Any] = {}
    for method, feats in methods.items():
        scores = []
        frames_done, seconds = 0, 0.0
        for seq in tqdm(names, desc=f"eval {method}", disable=not progress):
            frames, gt = load_sequence(davis_root, seq, resolution)
            t0 = time.perf_counter()
            if feats is None:
                pred = list(copy_first_mask(frames, gt[0]))
            else:
                pred = list(propagate_masks(frames, gt[0], feats, cfg))
            seconds += time.perf_counter() - t0
            frames_done += len(frames)
            scores.append(evaluate_sequence(gt, pred, name=seq))
            if save_masks:
                for i, m in enumerate(pred):
                    write_mask(Path(save_masks) / method / seq / f"{i:05d}.png", m)
        summary = summarize(scores)
        summary["frames_per_sec"] = frames_done / max(seconds, 1e-9)
        results[method] = summary
    return {"methods": results, "settings": {**cfg.to_dict(), "resolution": resolution, "sequences": names}, "checkpoint": checkpoint}


@register_eval("tracking")
def tracking_eval(
    checkpoint: str = "",
    davis_root: str = "",
    sequences: list[str] = (),  # type: ignore[assignment]
    resolution: str = "480p",
    topk: int = 10,
    radius: int = 12,
    refs: int = 3,
    scale: float = 1.0,
    no_baselines: bool = False,
    save_masks: str = "",
    device: str = "cpu",
    out: str | None = None,
) -> dict[str, Any]:
    """DAVIS J&F of colorization tracking vs. the copy-first-mask and raw-Lab baselines.

    ``avlearn eval tracking --checkpoint C --davis-root D [--sequences a b] [--out FILE.json]``;
    without --checkpoint only the baselines run.
    """
    if not davis_root:
        raise ValueError("--davis-root is required")
    metrics = evaluate_tracking(
        davis_root, checkpoint=checkpoint or None, sequences=list(sequences) or None, resolution=resolution, topk=topk, radius=radius, refs=refs,
        scale=scale, baselines=not no_baselines, save_masks=save_masks or None, device=device,
    )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
