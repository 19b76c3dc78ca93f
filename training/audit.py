"""The shortcut audit (``avlearn audit shortcuts``): can the AVC network tell label 1 from label 0
when no content links a frame to its audio?

Every audit pair takes its audio from ANOTHER video, for both labels: the "positive" (label 1)
and the negative (label 0) audio are both drawn by the project's matched rule
(:meth:`avlearn.pretext.avc.CorrespondencePairs.matched_audio`: another video, same position
class, same jitter candidate). So the label says only which sampling path made the pair. The
real network (``training.loop.train``, the avc task's model, loss and augmentation) is trained
on such pairs for a short budget and scored on pairs of held-out videos it never saw (a
world's own held-out splits; other sources are cross-fitted over ``folds`` groups of clips,
so every clip is scored once by a model that never saw it, and the counts are pooled):

- ``sampler="matched"``: both labels' audio goes through the project's one path (segment
  records from ``read_segments``, the same spectrogram table). Nothing separates the labels,
  so held-out accuracy must stay at chance; a figure above it would mean the sampler leaks.
- ``sampler="naive"`` (only here, never in training): the "positive" audio goes through a
  second loader of the kind a pipeline grows when audio is read apart from the frames: the
  clip's soundtrack decoded at 22.05 kHz (librosa.load's default rate), cut at an arbitrary
  start time (uniform between this start candidate and the next, off the frame grid), and
  brought to the model's rate by linear interpolation (``np.interp``: no anti-alias filter);
  the negatives stay on the normal path. The network can learn that resampling artifact, so
  accuracy rises above chance: proof that the audit can see a shortcut when there is one.

Verdict: the Wilson 95% interval of held-out accuracy against chance ± ``CHANCE_MARGIN``:
"shortcut found" when the interval lies outside [0.45, 0.55], "no shortcut found" when it
lies inside, "inconclusive" otherwise (more held-out pairs or a longer budget decide).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.pretext.avc import hash_clip
from training.audit_pairs import AUDIT_TASK, CHANCE, CHANCE_MARGIN, HELDOUT_SPLITS, SAMPLERS, AuditAVC, AuditError, audit_dataset, ensure_task
from training.tasks.avc import AVCTask

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- splits, budget, scoring


@dataclass(frozen=True)
class Fold:
    """One train / held-out split of the audit: manifests and clip ids."""

    train: Path
    heldout: Path
    train_ids: tuple[str, ...]
    heldout_ids: tuple[str, ...]


def fold_clips(data: str, out_dir: Path, *, folds: int, seed: int) -> list[Fold]:
    """Split the clips of ``data`` that have audio into train / held-out manifests (JSONL, in ``out_dir``).

    A folder with ``splits/train.csv`` (a synthetic world) gives one fold: train on that split,
    hold out every video of the other splits. Any other source is cross-fitted: its clips,
    ranked by a seeded hash of the clip id, are dealt into ``folds`` groups (fewer when there
    are under two clips per group) and each group is held out once, so every clip is scored
    by a model that never saw it.

    Raises:
        AuditError: no such path, a shard dir, or fewer than four clips with audio (two a side).
    """
    from avlearn.data.sources import is_shard_dir, load_source
    from avlearn.media import MediaError, probe

    root = Path(data)
    if not root.exists():
        raise AuditError(f"--data {data}: no such file or folder")
    if is_shard_dir(root):
        raise AuditError(f"--data {data} is a prepared shard dir; the audit decodes the media itself: give the raw source the shards were made from")

    def with_audio(spans: list) -> list:
        keep = []
        for s in spans:
            try:
                if probe(s.path).has_audio:
                    keep.append(s)
            except MediaError as exc:
                log.warning("audit: skipping %s: %s", s.path, exc)
        return keep

    if (root / "splits" / "train.csv").is_file():
        train = with_audio(load_source(str(root / "splits" / "train.csv")).spans)
        seen = {s.clip_id for s in train}
        held = [s for name in HELDOUT_SPLITS if (root / "splits" / f"{name}.csv").is_file() for s in load_source(str(root / "splits" / f"{name}.csv")).spans]
        parts = [(train, with_audio([s for s in held if s.clip_id not in seen]))]
    else:
        spans = sorted(with_audio(load_source(data).spans), key=lambda s: hash_clip(f"{seed}:{s.clip_id}"))
        k = max(1, min(folds, len(spans) // 2))
        if k == 1:
            parts = [(spans[len(spans) // 2 :], spans[: len(spans) // 2])]
        else:
            parts = [([s for i, s in enumerate(spans) if i % k != f], spans[f::k]) for f in range(k)]
    out: list[Fold] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, (train, held) in enumerate(parts):
        if len(train) < 2 or len(held) < 2:
            raise AuditError(
                f"--data {data}: {len(train)} training and {len(held)} held-out clips with audio; the audit needs at least two of each (give more videos)"
            )
        paths = []
        for name, spans in (("train", train), ("heldout", held)):
            path = out_dir / f"fold{f}_{name}.jsonl"
            path.write_text("".join(json.dumps({**s.to_dict(), "end_sec": s.end_sec}) + "\n" for s in spans))
            paths.append(path)
        out.append(Fold(paths[0], paths[1], tuple(s.clip_id for s in train), tuple(s.clip_id for s in held)))
    return out


def seconds_per_step(task: AVCTask, preset: str, batch_size: int, device: torch.device, *, seed: int) -> float:
    """Measured wall time of one training step of the task's model at ``batch_size``: the per-sample
    work of :class:`InMemoryAVC` (crop, flip, normalise, collate) and forward, backward, AdamW."""
    from avlearn.embed.preprocess import Preprocessor
    from avlearn.pretext.augment import crop_flip

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = task.build_model(preset).to(device).train()
    pre = Preprocessor.from_config(model.preprocessing)
    frames = rng.integers(0, 256, (batch_size, *pre.image_size_px, 3), dtype=np.uint8)
    audio = torch.randn(batch_size, *pre.spectrogram_shape)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(5):
        t0 = time.perf_counter()
        items = [{"image": pre.image(crop_flip(f, rng)), "audio": a, "label": torch.tensor(k % 2)} for k, (f, a) in enumerate(zip(frames, audio))]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        loss = task.compute(model, batch)["loss"]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if i >= 2:  # the first steps pay for allocation
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


@torch.no_grad()
def score(task: AVCTask, model: torch.nn.Module, ds: AuditAVC, *, min_pairs: int, batch_size: int, device: torch.device) -> dict[str, Any]:
    """Held-out accuracy over whole epochs of ``ds``'s pairs (epoch 0, 1, ... until ``min_pairs``)."""
    model.eval()
    correct = total = 0
    audio_used: set[int] = set()
    epoch = 0
    while total < min_pairs:
        ds.pairs.set_epoch(epoch)
        for start in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
            audio_used.update(ds.pairs.pair(i).audio_idx for i in range(start, start + len(items)))
            batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
            correct += int(round(float(task.compute(model, batch)["acc"]) * len(items)))
            total += len(items)
        epoch += 1
    ds.pairs.set_epoch(0)
    return {"correct": correct, "pairs": total, **wilson(correct, total), "distinct_audio_windows": len(audio_used), "epochs_of_pairs": epoch}


def wilson(correct: int, total: int) -> dict[str, Any]:
    """Accuracy and its Wilson 95% score interval (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    ci = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    return {"accuracy": correct / total, "ci95": [float(ci.low), float(ci.high)]}


def verdict(ci95: list[float], margin: float = CHANCE_MARGIN) -> str:
    """ "shortcut found" / "no shortcut found" / "inconclusive" from the interval against chance ± margin."""
    lo, hi = ci95
    if lo > CHANCE + margin or hi < CHANCE - margin:
        return "shortcut found"
    if lo >= CHANCE - margin and hi <= CHANCE + margin:
        return "no shortcut found"
    return "inconclusive"


# ---------------------------------------------------------------- the audit


def run_audit(
    data: str,
    *,
    sampler: str = "matched",
    preset: str = "small",
    steps: int | None = None,
    budget_sec: float = 180.0,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    folds: int = 3,
    heldout_pairs: int = 2000,
    device: str = "auto",
    options: dict[str, str] | None = None,
    run_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the avc network on no-correspondence pairs of ``data`` and score held-out videos.

    Args:
        sampler: "matched" (the project's path) or "naive" (label-1 audio through a second loader).
        steps: training steps per model; None shares ``budget_sec`` of training among the folds'
            models and turns it into steps from a measured step time.
        folds: held-out groups of a source without splits (see :func:`fold_clips`).
        heldout_pairs: score at least this many held-out pairs in all (whole epochs of each fold's pairing).
        options: further avc ``--set`` options (model, jitter, augment, decode_workers).
        run_dir: where the runs and the split manifests go (default: a temporary folder, removed after).

    Returns:
        The report: pooled held-out accuracy with its Wilson 95% interval, the random-weights row,
        the verdict, each fold's figures, sizes and times.

    Raises:
        AuditError: bad settings or unusable data; TrainingError from the loop.
    """
    from avlearn.checkpoint import load_checkpoint
    from avlearn.device import resolve_device
    from training.loop import train
    from training.tasks import get_task

    if sampler not in SAMPLERS:
        raise AuditError(f"--sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
    if steps is not None and steps < 1:
        raise AuditError(f"--steps must be >= 1, got {steps}")
    if steps is None and not budget_sec > 0:
        raise AuditError(f"--budget-sec must be > 0, got {budget_sec}")
    if batch_size < 2:
        raise AuditError(f"--batch-size must be >= 2, got {batch_size}")
    if folds < 1:
        raise AuditError(f"--folds must be >= 1, got {folds}")
    if heldout_pairs < 1:
        raise AuditError(f"--heldout-pairs must be >= 1, got {heldout_pairs}")
    options = {**(options or {}), "sampler": sampler}
    ensure_task()
    task = get_task(AUDIT_TASK, options)  # checks the options before anything is decoded
    task.build_model(preset)  # an unknown preset fails here (KeyError naming the known ones)
    dev = resolve_device(device)
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="avlearn-audit-") as tmp:
        work = Path(run_dir) if run_dir else Path(tmp)
        splits = fold_clips(data, work, folds=folds, seed=seed)
        step_sec = None
        fold_steps = steps
        if fold_steps is None:
            step_sec = seconds_per_step(task, preset, batch_size, dev, seed=seed)
            fold_steps = max(10, int(budget_sec / len(splits) / step_sec))
            log.info("audit: %.3f s per step of %d -> %d steps per model (%d) for %.0f s", step_sec, batch_size, fold_steps, len(splits), budget_sec)
        min_pairs = math.ceil(heldout_pairs / len(splits))
        for k, fold in enumerate(splits):
            t_train = time.perf_counter()
            summary = train(
                AUDIT_TASK,
                str(fold.train),
                work / f"fold{k}",
                preset=preset,
                steps=fold_steps,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                device=str(dev),
                options=options,
                progress=progress,
            )
            train_sec = time.perf_counter() - t_train
            model, _ = load_checkpoint(summary["final"], dev)
            held = audit_dataset(str(fold.heldout), model.preprocessing, task.opts, seed=seed + 1 + k, train=False)
            trained = score(task, model, held, min_pairs=min_pairs, batch_size=max(batch_size, 64), device=dev)
            torch.manual_seed(seed)
            random_weights = score(task, task.build_model(preset).to(dev), held, min_pairs=min_pairs, batch_size=max(batch_size, 64), device=dev)
            rows.append(
                {
                    "heldout_clip_ids": list(fold.heldout_ids),
                    "train_clips": len(fold.train_ids),
                    "steps": fold_steps,
                    "train_sec": train_sec,
                    "train_accuracy_last_100_steps": _recent_train_accuracy(work / f"fold{k}" / "metrics.jsonl", 100),
                    "trained": trained,
                    "random_weights": random_weights,
                    "jitter": held.pairs.per_slot,
                }
            )
    return {
        "data": str(data),
        "sampler": sampler,
        "verdict": verdict(_pooled(rows, "trained")["ci95"]),
        "chance": CHANCE,
        "chance_margin": CHANCE_MARGIN,
        "trained": _pooled(rows, "trained"),
        "random_weights": _pooled(rows, "random_weights"),
        "heldout_clips": sum(len(r["heldout_clip_ids"]) for r in rows),
        "folds": rows,
        "preset": preset,
        "model": task.opts.model,
        "jitter": rows[0]["jitter"],
        "steps_per_model": fold_steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "seconds_per_step_measured": step_sec,
        "train_sec": sum(r["train_sec"] for r in rows),
        "wall_sec": time.perf_counter() - t_start,
        "device": str(dev),
    }


def _pooled(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    correct = sum(r[key]["correct"] for r in rows)
    total = sum(r[key]["pairs"] for r in rows)
    return {"correct": correct, "pairs": total, **wilson(correct, total), "distinct_audio_windows": sum(r[key]["distinct_audio_windows"] for r in rows)}


def _recent_train_accuracy(metrics: Path, last: int) -> float | None:
    """Mean training-batch accuracy over the last ``last`` steps of a run's metrics.jsonl."""
    if not metrics.is_file():
        return None
    accs = [row["acc"] for row in map(json.loads, metrics.read_text().splitlines()) if row.get("split") == "train" and "acc" in row]
    return float(np.mean(accs[-last:])) if accs else None


def verdict_line(report: dict[str, Any]) -> str:
    """The one-line verdict the CLI prints."""
    t, r = report["trained"], report["random_weights"]
    lo, hi = t["ci95"]
    return (
        f"{report['verdict']}: held-out accuracy {t['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}; chance {CHANCE:g} ± {CHANCE_MARGIN:g}) "
        f"on {t['pairs']} pairs of {report['heldout_clips']} unseen videos ({len(report['folds'])} fold(s)), sampler {report['sampler']}; "
        f"random weights {r['accuracy']:.3f}"
    )
