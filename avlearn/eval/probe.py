"""Frozen-feature probes of a frame trunk: nearest neighbour and linear, against random weights.

Protocol (``probe_trunk``):

1. Clips: every span of the labelled source with at least one label; its class is the first
   label (the sounding category of a synthetic world's labels.csv). Classes with fewer than
   two clips are dropped (they cannot be held out).
2. Frames: ``frames_per_clip`` frames evenly spread over each clip (``avlearn.media.read_frames``
   at the model's size), as features of two layers (``LAYERS``): ``embedding`` —
   ``model.embed_image``, the L2-normalised trunk output (what the Embedder serves) — and
   ``conv`` — ``model.conv_features``, the conv tower's output, global-average-pooled (the
   usual layer for probing self-supervised conv features), when the model has it. An early-fusion
   (stacked-frames) trunk sees each frame as a still, as the Embedder shows it; ``stacks=True``
   gives it K real frames around each moment instead (what it was trained on; a diagnostic).
3. Grouped k-fold cross-validation by clip (``sklearn.model_selection.GroupKFold``): no clip
   has frames on both sides. Per fold: 1-NN by cosine similarity, and a logistic-regression
   probe on standardised features. Accuracies are over all held-out frames.
4. The same with the same architecture at random initialisations (``create_model`` under
   ``torch.manual_seed(seed + i)``, i < ``random_inits``, default 5), averaged: one random
   draw moves the baseline by about ±0.02 (measured: 1-NN on `conv` 0.31–0.37 over five seeds),
   so ``delta_*`` = learned − mean random measures what the pretext task taught the trunk; each
   init's accuracies are kept (``random["nn_per_init"]``, ``random["linear_per_init"]``).

Diagnostics (``blocks``, with ``blocks=True``): every conv block's output, average- and
max-pooled over space, probed the same way. They show where in the tower the learned features
differ from random ones; the declared layers above are what a bar is judged on (picking a block
after seeing this table would be selection).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def clip_frames(
    src: str | os.PathLike, *, size_px: tuple[int, int], frames_per_clip: int = 8, stack: int = 1, stack_gap_frames: int = 1
) -> tuple[np.ndarray, list[str], list[str], list[dict]]:
    """Frames of every labelled clip of a source.

    ``frames_per_clip`` moments evenly spread over each clip. ``stack`` > 1: each moment is K =
    ``stack`` frames ``stack_gap_frames`` grid frames apart, centred on it (clamped to the clip),
    in temporal order — the input of an early-fusion trunk.

    Returns:
        (frames (M, H, W, 3) uint8 — (M, K, H, W, 3) when ``stack`` > 1 —, class per moment,
        clip_id per moment, skipped records).
    """
    from avlearn.data.sources import load_source
    from avlearn.media import MediaError, probe, read_frames

    if stack < 1 or stack_gap_frames < 1:
        raise ValueError(f"stack and stack_gap_frames must be >= 1, got {stack}, {stack_gap_frames}")
    source = load_source(src)
    frames: list[np.ndarray] = []
    labels: list[str] = []
    groups: list[str] = []
    skipped: list[dict] = list(source.missing)
    for span in source.spans:
        if not span.labels:
            continue
        try:
            end, fps = span.end_sec, 0.0
            if end is None or stack > 1:  # open the file only when its length or frame rate is needed
                info = probe(span.path)
                end, fps = (info.duration_sec if end is None else end), (info.fps or 25.0)
            dur = max(0.0, end - span.start_sec)
            times = span.start_sec + (np.arange(frames_per_clip) + 0.5) * dur / frames_per_clip
            if stack > 1:  # whole grid frames around each moment, clamped to the clip's first and last frame
                offsets = np.arange(stack) * stack_gap_frames - (stack - 1) * stack_gap_frames // 2
                first, last = np.ceil(span.start_sec * fps - 1e-6), np.floor(end * fps - 1e-6)
                grid = np.clip(np.round(times * fps)[:, None] + offsets[None, :], first, max(first, last))
                times = grid.reshape(-1) / fps
            # fillers every <= 2 s keep read_frames decoding straight on: its seek path hung on
            # the synthetic H.264 files (see docs/temporal.md)
            fillers = np.arange(span.start_sec, times.max(), 2.0)
            fr = read_frames(span.path, np.concatenate([times, fillers]), size_px=size_px)
            images = fr.images[: len(times)]
            if stack > 1:
                images = images.reshape(frames_per_clip, stack, *images.shape[1:])
        except MediaError as exc:
            log.warning("probe: skipping %s: %s", span.path, exc)
            skipped.append(exc.to_record())
            continue
        frames.append(images)
        labels += [span.labels[0]] * len(images)
        groups += [span.clip_id] * len(images)
    if not frames:
        shape = (0, stack, *size_px, 3) if stack > 1 else (0, *size_px, 3)
        return np.zeros(shape, np.uint8), [], [], skipped
    return np.concatenate(frames), labels, groups, skipped


LAYERS = {"embedding": "embed_image", "conv": "conv_features"}  # probe layer → model method


def _inputs(pre, frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (B, K, H, W, 3) → normalised (B, 3, H, W) or (B, K, 3, H, W)."""
    x = pre.images(frames.reshape(-1, *frames.shape[-3:]))
    return x.reshape(*frames.shape[:-3], *x.shape[1:])


@torch.no_grad()
def embed_frames(
    model: torch.nn.Module, frames: np.ndarray, *, device: str | torch.device = "cpu", batch_size: int = 128, layer: str = "embedding"
) -> np.ndarray:
    """uint8 (M, H, W, 3) frames or (M, K, H, W, 3) stacks → (M, D) float32 features of ``layer`` (see ``LAYERS``; default: L2-normalised ``embed_image``)."""
    from avlearn.embed.preprocess import Preprocessor

    pre = Preprocessor.from_config(model.preprocessing).to(device)
    model = model.to(device).eval()
    fn = getattr(model, LAYERS[layer])
    out = [fn(_inputs(pre, frames[i : i + batch_size])).float().cpu().numpy() for i in range(0, len(frames), batch_size)]
    return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def embed_blocks(model: torch.nn.Module, frames: np.ndarray, *, device: str | torch.device = "cpu", batch_size: int = 128) -> dict[str, np.ndarray]:
    """uint8 (M, H, W, 3) frames or (M, K, H, W, 3) stacks → {"block{i}_avg" | "block{i}_max": (M, C_i)}: each conv block's map (``model.block_maps``) pooled over space."""
    from avlearn.embed.preprocess import Preprocessor

    pre = Preprocessor.from_config(model.preprocessing).to(device)
    model = model.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(frames), batch_size):
        for b, m in enumerate(model.block_maps(_inputs(pre, frames[i : i + batch_size])), start=1):
            parts.setdefault(f"block{b}_avg", []).append(m.mean(dim=(2, 3)).float().cpu().numpy())
            parts.setdefault(f"block{b}_max", []).append(m.amax(dim=(2, 3)).float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _compare(trained: dict[str, Any], rand: dict[str, Any]) -> dict[str, Any]:
    return dict(
        trained=trained, random=rand,
        delta_nn=trained["nn_accuracy"] - rand["nn_accuracy"], delta_linear=trained["linear_accuracy"] - rand["linear_accuracy"],
    )  # fmt: skip


def mean_of_inits(results: list[dict[str, Any]]) -> dict[str, Any]:
    """``probe_features`` results of several random inits → one, with the accuracies averaged and each init's kept."""
    out = dict(results[0])
    for key in ("nn_accuracy", "linear_accuracy"):
        per = [r[key] for r in results]
        out[key] = float(np.mean(per))
        out[key.replace("accuracy", "per_init")] = per
    out["inits"] = len(results)
    return out


def probe_features(features: np.ndarray, labels: list[str], groups: list[str], *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Grouped k-fold 1-NN (cosine) and logistic-regression accuracy of (M, D) features.

    Raises:
        ValueError: fewer than two classes with at least two clips each.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    y_all, g_all = np.asarray(labels), np.asarray(groups)
    clips_per_class = {c: len(set(g_all[y_all == c])) for c in set(labels)}
    keep_classes = sorted(c for c, n in clips_per_class.items() if n >= 2)
    if len(keep_classes) < 2:
        raise ValueError(f"the probe needs >= 2 classes with >= 2 clips each; got clips per class {clips_per_class}")
    keep = np.isin(y_all, keep_classes)
    x, y, g = features[keep], y_all[keep], g_all[keep]
    n_groups = len(set(g))
    k = max(2, min(folds, n_groups))
    nn_hits, lin_hits = 0, 0
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    for train_idx, test_idx in GroupKFold(n_splits=k).split(x, y, g):
        sim = xn[test_idx] @ xn[train_idx].T
        nn_hits += int((y[train_idx][sim.argmax(axis=1)] == y[test_idx]).sum())
        if len(set(y[train_idx])) < 2:
            lin_hits += int((y[test_idx] == y[train_idx][0]).sum())
            continue
        scaler = StandardScaler().fit(x[train_idx])
        clf = LogisticRegression(max_iter=2000, C=1.0, random_state=seed).fit(scaler.transform(x[train_idx]), y[train_idx])
        lin_hits += int((clf.predict(scaler.transform(x[test_idx])) == y[test_idx]).sum())
    _, counts = np.unique(y, return_counts=True)
    return {
        "nn_accuracy": nn_hits / len(y),
        "linear_accuracy": lin_hits / len(y),
        "majority": float(counts.max() / len(y)),
        "classes": len(keep_classes),
        "clips": n_groups,
        "frames": int(len(y)),
        "folds": k,
    }


def random_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture (from ``model.model_config``) at a seeded random initialisation."""
    from avlearn.models import model_from_config

    return model_from_config(model.model_config, seed=seed).eval()


def probe_trunk(
    model: torch.nn.Module,
    src: str | os.PathLike,
    *,
    frames_per_clip: int = 8,
    folds: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    blocks: bool = False,
    random_inits: int = 5,
    stacks: bool = False,
    stack_gap_frames: int = 1,
) -> dict[str, Any]:
    """Probe ``model``'s frame features on the labelled clips of ``src`` against the mean of ``random_inits`` random-weight twins.

    The trunk is fed single frames, as the Embedder feeds it (an early-fusion trunk, ``model.stack_frames``
    K > 1, sees each frame as a still). ``stacks`` feeds such a trunk what it was trained on instead:
    K frames ``stack_gap_frames`` grid frames apart around each moment. ``input`` in the result says which.

    Returns {"trained": {...}, "random": {...}, "delta_nn", "delta_linear", "skipped", "layers"}:
    the top-level entries are the ``embedding`` layer's; ``layers[name]`` holds the same four for
    every layer the model has (``LAYERS``); with ``blocks``, ``blocks[name]`` the same for each
    conv block, average- and max-pooled (diagnostics, see the module docstring).
    {"skipped_reason": ...} when the source has too few labelled clips.
    """
    size = tuple(model.preprocessing["image_size_px"])
    stack = int(getattr(model, "stack_frames", 1)) if stacks else 1
    frames, labels, groups, skipped = clip_frames(src, size_px=size, frames_per_clip=frames_per_clip, stack=stack, stack_gap_frames=stack_gap_frames)  # type: ignore[arg-type]
    out: dict[str, Any] = {
        "source": str(src), "frames_per_clip": frames_per_clip, "skipped": len(skipped),
        "input": f"stack of {stack} frames {stack_gap_frames} grid frames apart" if stack > 1 else "frame",
    }  # fmt: skip
    if random_inits < 1:
        raise ValueError(f"random_inits must be >= 1, got {random_inits}")
    twins = [random_like(model, seed + i) for i in range(random_inits)]

    def vs_random(trained: dict[str, Any], random_features: list[np.ndarray]) -> dict[str, Any]:
        return _compare(trained, mean_of_inits([probe_features(f, labels, groups, folds=folds, seed=seed) for f in random_features]))

    layers: dict[str, Any] = {}
    for layer, method in LAYERS.items():
        if not hasattr(model, method):
            continue
        try:
            trained = probe_features(embed_frames(model, frames, device=device, layer=layer), labels, groups, folds=folds, seed=seed)
        except ValueError as exc:
            out["skipped_reason"] = str(exc)
            return out
        layers[layer] = vs_random(trained, [embed_frames(t, frames, device=device, layer=layer) for t in twins])
    out.update(layers["embedding"], layers=layers)
    if blocks and hasattr(model, "block_maps"):
        ft = embed_blocks(model, frames, device=device)
        fr = [embed_blocks(t, frames, device=device) for t in twins]
        out["blocks"] = {k: vs_random(probe_features(ft[k], labels, groups, folds=folds, seed=seed), [f[k] for f in fr]) for k in ft}
    return out
