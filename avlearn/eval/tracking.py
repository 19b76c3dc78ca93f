"""Tracking evaluation: `avlearn eval tracking`, DAVIS J&F of colorization tracking vs the
copy-first-mask and raw-Lab propagation baselines (metrics and DAVIS I/O in avlearn.eval.davis)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avlearn.eval.registry import register_eval


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

    from avlearn.data.davis import list_sequences, load_sequence, write_mask
    from avlearn.eval.davis import evaluate_sequence, summarize
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
        davis_root,
        checkpoint=checkpoint or None,
        sequences=list(sequences) or None,
        resolution=resolution,
        topk=topk,
        radius=radius,
        refs=refs,
        scale=scale,
        baselines=not no_baselines,
        save_masks=save_masks or None,
        device=device,
    )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
