"""Evaluation of the temporal methods: `avlearn eval shuffle_learn` and `avlearn eval odd_one_out`.

Held-out pretext accuracy (fixed questions on the held-out videos of the source) and the
frozen-trunk probe of ``avlearn.eval.probe`` against the same architecture at random weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from avlearn.eval.registry import register_eval
from avlearn.pretext import resolve_split
from avlearn.pretext.temporal import FrameCacheConfig, fixed_order_tuples, fixed_questions, load_cached_videos, question_config

DEFAULT_GAP = 6  # odd-one-out: grid frames between the frames of a subsequence when the checkpoint does not say


@torch.no_grad()
def pretext_accuracy(model: torch.nn.Module, ds: Dataset, *, device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on every sample of a fixed dataset ({"frames", "label"} items)."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for start in range(0, len(ds), batch_size):  # type: ignore[arg-type]
        items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]  # type: ignore[arg-type]
        frames = torch.stack([it["frames"] for it in items]).to(device)
        label = torch.stack([it["label"] for it in items]).to(device)
        logits = model(frames)["logits"].float()
        loss += float(F.cross_entropy(logits, label, reduction="sum"))
        correct += int((logits.argmax(dim=1) == label).sum())
        n += len(items)
    return {"accuracy": correct / max(n, 1), "loss": loss / max(n, 1), "samples": n}


def _trained_option(config: dict[str, Any], key: str, default: int) -> int:
    """An integer task option the checkpoint was trained with (``--set key=value``), else ``default``."""
    value = config.get("run", {}).get("options", {}).get(key)
    return int(value) if value not in (None, "") else default


def evaluate_temporal(
    task_name: str, checkpoint: str, data: str, *, split: str = "test", labels: str | None = None, samples: int = 1000, probe: bool = True,
    probe_frames: int = 8, folds: int = 5, probe_blocks: bool = False, probe_random_inits: int = 5, probe_stacks: bool = False,
    tau_max: int = 60, tau_min: int = 15, gap: int = 0, max_videos: int = 0, seed: int = 0, device: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Pretext accuracy on the held-out ``split`` of ``data`` + the frozen-trunk probe (both temporal tasks).

    ``gap`` (odd_one_out): 0 = as the checkpoint was trained. Raises ValueError for a checkpoint of another model.
    """
    from avlearn.checkpoint import checkpoint_hash, load_checkpoint
    from avlearn.device import resolve_device
    from avlearn.pretext.shuffle_learn import TupleConfig

    dev = resolve_device(device)
    model, config = load_checkpoint(checkpoint, device=dev)
    if config["model"]["name"] != task_name:
        raise ValueError(f"{checkpoint} holds a {config['model']['name']!r} model, not {task_name!r}")
    try:
        src, used_split = resolve_split(data, split), split
    except FileNotFoundError:  # no such split: evaluate the source as given
        src, used_split = str(data), "all"
    videos = load_cached_videos(src, model.preprocessing, FrameCacheConfig(max_videos=max_videos or None), what=task_name)
    if task_name == "shuffle_learn":
        ds: Dataset = fixed_order_tuples(videos, model.preprocessing, TupleConfig(tau_max=tau_max, tau_min=tau_min), seed=seed + 12345, length=samples)
        chance, stack_gap = 0.5, 1
    else:
        stack_gap = gap or _trained_option(config, "gap", DEFAULT_GAP)
        ds = fixed_questions(videos, model.preprocessing, question_config(model, gap=stack_gap), seed=seed + 12345, length=samples)
        chance = 1.0 / int(model.num_questions)
    out: dict[str, Any] = {
        "task": task_name, "checkpoint": str(checkpoint), "checkpoint_hash": checkpoint_hash(checkpoint), "data": str(data), "split": used_split,
        "videos": len(videos), "chance": chance, "pretext": pretext_accuracy(model, ds, device=dev),
    }  # fmt: skip
    if probe:
        from avlearn.eval.probe import probe_trunk

        out["probe"] = probe_trunk(
            model, labels or data, frames_per_clip=probe_frames, folds=folds, seed=seed, device=dev, blocks=probe_blocks, random_inits=probe_random_inits,
            stacks=probe_stacks, stack_gap_frames=stack_gap if probe_stacks else 1,
        )  # fmt: skip
    return out


@register_eval("shuffle_learn")
def eval_shuffle_learn(
    checkpoint: str,
    data: str,
    split: str = "test",
    labels: str | None = None,
    samples: int = 1000,
    no_probe: bool = False,
    probe_frames: int = 8,
    probe_blocks: bool = False,
    probe_random_inits: int = 5,
    folds: int = 5,
    tau_max: int = 60,
    tau_min: int = 15,
    max_videos: int = 0,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Held-out order-verification accuracy (balanced, chance 0.5) and a frozen-trunk probe vs random weights.

    ``data``: the source whose ``split`` is evaluated (the whole source when it has no such split);
    ``labels``: the labelled source of the probe (default: ``data`` itself, e.g. a world folder and its labels.csv);
    ``probe_blocks``: also probe every conv block, average- and max-pooled (diagnostics);
    ``probe_random_inits``: random-weight twins averaged as the baseline.
    """
    return evaluate_temporal(
        "shuffle_learn", checkpoint, data, split=split, labels=labels, samples=samples, probe=not no_probe, probe_frames=probe_frames, folds=folds,
        probe_blocks=probe_blocks, probe_random_inits=probe_random_inits, tau_max=tau_max, tau_min=tau_min, max_videos=max_videos, seed=seed, device=device,
    )  # fmt: skip


@register_eval("odd_one_out")
def eval_odd_one_out(
    checkpoint: str,
    data: str,
    split: str = "test",
    labels: str | None = None,
    samples: int = 1000,
    no_probe: bool = False,
    probe_frames: int = 8,
    probe_blocks: bool = False,
    probe_random_inits: int = 5,
    probe_stacks: bool = False,
    folds: int = 5,
    gap: int = 0,
    max_videos: int = 0,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Held-out odd-one-out accuracy (chance 1/N) and a frozen-trunk probe vs random weights.

    ``data``: the source whose ``split`` is evaluated (the whole source when it has no such split);
    ``labels``: the labelled source of the probe (default: ``data`` itself, e.g. a world folder and its labels.csv);
    ``probe_blocks``: also probe every conv block, average- and max-pooled (diagnostics);
    ``probe_random_inits``: random-weight twins averaged as the baseline;
    ``gap``: grid frames between the frames of a subsequence (0: as the checkpoint was trained, default 6);
    ``probe_stacks``: probe a stacked-frames trunk on stacks of K frames ``gap`` grid frames apart
    (what it was trained on) instead of single frames shown as stills (what the Embedder serves).
    """
    return evaluate_temporal(
        "odd_one_out", checkpoint, data, split=split, labels=labels, samples=samples, probe=not no_probe, probe_frames=probe_frames, folds=folds,
        probe_blocks=probe_blocks, probe_random_inits=probe_random_inits, probe_stacks=probe_stacks, gap=gap, max_videos=max_videos, seed=seed, device=device,
    )  # fmt: skip
