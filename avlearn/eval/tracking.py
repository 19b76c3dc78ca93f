"""Tracking evaluation: `avlearn eval tracking`, DAVIS J&F of colorization tracking vs the
copy-first-mask and raw-Lab propagation baselines and the same model at random weights
(metrics, the official frame rule and DAVIS I/O in avlearn.eval.davis).

Held out by construction: a checkpoint's run config names its training data (``run.data``,
``run.val_data``); the evaluation refuses to score a sequence the model was trained on
(:func:`training_overlap`) and says in its output what it checked (``held_out``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avlearn.eval.registry import register_eval


def _first_frame_digest(folder: Path) -> str | None:
    """SHA-1 of a frame folder's first image file (by name), or None when it has none."""
    from avlearn.pretext.colorization import IMAGE_EXTENSIONS

    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return hashlib.sha1(images[0].read_bytes()).hexdigest() if images else None


def training_frame_folders(run_config: dict[str, Any]) -> list[Path]:
    """The frame folders a colorization run decoded as raw video (DAVIS roots' sequences, folders of frames), from its data specs."""
    from avlearn.pretext.colorization import frame_folders

    specs = [x.strip() for key in ("data", "val_data") for x in str(run_config.get(key) or "").split(",") if x.strip()]
    folders: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            folders += frame_folders(path)
    return folders


def training_overlap(run_config: dict[str, Any], davis_root: str | os.PathLike, sequences: Sequence[str], resolution: str) -> dict[str, str]:
    """{sequence: training frame folder} for every evaluated sequence that the run trained on: the same folder
    (resolved path), or a folder whose first frame is byte-identical (a copy)."""
    train = training_frame_folders(run_config)
    by_path = {os.path.realpath(f): str(f) for f in train}
    by_digest = {d: str(f) for f in train if (d := _first_frame_digest(f)) is not None}
    out = {}
    for seq in sequences:
        folder = Path(davis_root) / "JPEGImages" / resolution / seq
        hit = by_path.get(os.path.realpath(folder)) or by_digest.get(_first_frame_digest(folder) or "")
        if hit:
            out[seq] = hit
    return out


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
    random_weights: bool = True,
    save_masks: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """J and F of mask propagation on DAVIS-layout sequences, for a checkpoint and the two baselines.

    Methods: "model" (the checkpoint's embeddings; skipped without a checkpoint), "random" (the same
    architecture at random weights, seed 0), "lab" (raw Lab pixels at the same stride) and "copy"
    (the first mask on every frame). Scored frames: ``avlearn.eval.davis.scored_frames``.

    Returns:
        {"methods": {name: {"J", "F", "J&F", "sequences": {seq: {"J", "F", "J&F", ...}}, "frames_per_sec"}},
         "settings": {...}, "checkpoint": ..., "frames_scored": ..., "held_out": {...}}

    Raises:
        ValueError: the checkpoint was trained on an evaluated sequence (see :func:`training_overlap`).
    """
    from tqdm import tqdm

    from avlearn.data.davis import list_sequences, load_sequence, write_mask
    from avlearn.eval.davis import evaluate_sequence, summarize
    from avlearn.track import TrackConfig, copy_first_mask, lab_features, model_features, propagate_masks

    names = list(sequences) if sequences else list_sequences(davis_root, resolution)
    if not names:
        raise FileNotFoundError(f"{davis_root}: no sequences")
    cfg = TrackConfig(topk=topk, radius=radius, refs=refs, temperature=temperature, scale=scale, device=device)
    methods: dict[str, Any] = {}
    held_out: dict[str, Any] = {}
    if checkpoint:
        from avlearn.checkpoint import load_checkpoint
        from avlearn.models import model_from_config

        model, config = load_checkpoint(checkpoint, device=device)
        if not hasattr(model, "embed_frames"):
            raise ValueError(f"{checkpoint}: model {config['model'].get('name')!r} is not a colorization tracker")
        seen = training_overlap(config.get("run", {}), davis_root, names, resolution)
        if seen:
            first = next(iter(seen))
            raise ValueError(
                f"{checkpoint} was trained on {len(seen)} of the evaluated sequences ({first}: {seen[first]}); "
                "evaluate on held-out sequences (--sequences) or train without them"
            )
        specs = [x for key in ("data", "val_data") for x in str(config.get("run", {}).get(key) or "").split(",") if x.strip()]
        held_out = {
            "checked": True, "training_data": specs, "training_frame_folders": len(training_frame_folders(config.get("run", {}))),
            "statement": f"none of the {len(names)} evaluated sequences is in the checkpoint's training data (by folder and by first-frame content)",
        }  # fmt: skip
        methods["model"] = model_features(model, device=device)
        if random_weights:
            methods["random"] = model_features(model_from_config(config["model"], seed=0), device=device)
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
                pred = list(propagate_masks(frames, gt[0], feats, cfg))  # every frame; the toolkit's frames are scored
            seconds += time.perf_counter() - t0
            frames_done += len(frames)
            scores.append(evaluate_sequence(gt, pred, name=seq))
            if save_masks:
                for i, m in enumerate(pred):
                    write_mask(Path(save_masks) / method / seq / f"{i:05d}.png", m)
        summary = summarize(scores)
        summary["frames_per_sec"] = frames_done / max(seconds, 1e-9)
        results[method] = summary
    return {
        "methods": results, "settings": {**cfg.to_dict(), "resolution": resolution, "sequences": names}, "checkpoint": checkpoint,
        "frames_scored": "1 .. N-2 of each sequence (the official DAVIS toolkit's semi-supervised rule: first and last frame dropped)",
        "held_out": held_out or {"checked": False, "statement": "no checkpoint: baselines only"},
    }  # fmt: skip


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
    no_random_weights: bool = False,
    save_masks: str = "",
    device: str = "cpu",
    out: str | None = None,
) -> dict[str, Any]:
    """DAVIS J&F of colorization tracking vs. random weights and the copy-first-mask and raw-Lab baselines.

    ``avlearn eval tracking --checkpoint C --davis-root D [--sequences a b] [--out FILE.json]``;
    without --checkpoint only the baselines run. Frames 1 .. N-2 of each sequence are scored (the
    official toolkit's rule); a sequence the checkpoint was trained on is refused.
    """
    if not davis_root:
        raise ValueError("--davis-root is required")
    metrics = evaluate_tracking(
        davis_root,
        checkpoint=checkpoint or None,
        sequences=list(sequences) or None,
        resolution=resolution,
        topk=topk,
        radius=radius,
        refs=refs,
        scale=scale,
        baselines=not no_baselines,
        random_weights=not no_random_weights,
        save_masks=save_masks or None,
        device=device,
    )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
