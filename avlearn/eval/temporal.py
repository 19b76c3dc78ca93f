"""Evaluation of the temporal methods: `avlearn eval shuffle_learn` and `avlearn eval odd_one_out`.

Held-out pretext accuracy (fixed tuples / questions on the held-out videos of the source) and the
action probe of ``avlearn.eval.probe``: the frozen trunk's clip features, linear and k-NN, fitted on
labelled training videos and scored on held-out ones, beside random weights and the same
architecture trained supervised from scratch.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from avlearn.data.splits import resolve_split
from avlearn.eval.registry import register_eval
from avlearn.pretext.temporal import FrameCacheConfig, fixed_order_tuples, fixed_questions, load_cached_videos, question_config

log = logging.getLogger(__name__)

DEFAULT_GAP = 6  # odd-one-out: grid frames between the frames of a subsequence when the checkpoint does not say
DEFAULT_MAX_VIDEOS = 200  # held-out videos whose frames are cached for the pretext questions (a seeded draw)


def load_eval_videos(src: str, preprocessing: dict[str, Any], *, max_videos: int, seed: int, what: str) -> tuple[list[Any], dict[str, Any]]:
    """Frame caches of the held-out videos: a seeded draw of ``max_videos`` clips from the listing (0: all), only those decoded.

    The draw is :func:`avlearn.eval.sampling.iter_sampled_spans` (a seeded hash of file and start; the clips keep the
    listing's order). A prepared shard dir is cached whole (its reader has no per-clip filter for frame sequences).
    Returns (videos, report: listed, drawn, decoded, skipped). Raises ValueError: nothing could be decoded.
    """
    from avlearn.data.sources import is_shard_dir, load_source
    from avlearn.eval.sampling import iter_sampled_spans
    from avlearn.media import MediaError
    from avlearn.pretext.motion import load_raw_video

    if is_shard_dir(src):
        videos = load_cached_videos(src, preprocessing, FrameCacheConfig(), what=what)
        return videos, {"listed": len(videos), "drawn": len(videos), "decoded": len(videos), "skipped": 0, "note": "shard dir: every clip cached"}
    cfg = FrameCacheConfig()
    size = (int(preprocessing["image_size_px"][0]), int(preprocessing["image_size_px"][1]))
    source = load_source(src)
    drawn = list(iter_sampled_spans(source.spans, max_videos, seed))
    videos, skipped = [], 0
    for span in drawn:
        try:
            videos.append(
                load_raw_video(span, size_px=size, stride=cfg.stride, max_frames=cfg.max_frames, cut_threshold=cfg.cut_threshold, motion_measure=cfg.motion)
            )
        except MediaError as exc:
            log.warning("%s: skipping %s: %s", what, span.path, exc)
            skipped += 1
    if not videos:
        raise ValueError(f"{what}: no video could be decoded from {src} ({skipped} skipped, {len(source.missing)} missing)")
    return videos, {"listed": len(source.spans), "drawn": len(drawn), "decoded": len(videos), "skipped": skipped, "missing": len(source.missing)}


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
    task_name: str, checkpoint: str, data: str, *, split: str = "test", samples: int = 1000, probe: bool = True, probe_options: dict[str, Any] | None = None,
    tau_max: int = 0, tau_min: int = 0, gap: int = 0, max_videos: int = DEFAULT_MAX_VIDEOS, seed: int = 0, device: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Pretext accuracy on the held-out ``split`` of ``data`` + the action probe of the frozen trunk (both temporal tasks).

    ``probe_options``: the labelled set (``action_split`` keywords: probe_train, probe_test, ucf101, hmdb51,
    split_number, split_lists) and the probe's settings (``probe_actions`` keywords). ``tau_max``,
    ``tau_min`` (shuffle_learn) and ``gap`` (odd_one_out): 0 = as the checkpoint was trained (else the
    task's defaults: 60, 15 and 6 grid frames). ``max_videos``: the held-out videos cached for the pretext questions, a
    seeded draw from the listing made before decoding (0: all; :func:`load_eval_videos`). Raises ValueError for a
    checkpoint of another model.
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
    videos, drawn = load_eval_videos(src, model.preprocessing, max_videos=max_videos, seed=seed, what=task_name)
    if task_name == "shuffle_learn":
        taus = TupleConfig(tau_max=tau_max or _trained_option(config, "tau_max", 60), tau_min=tau_min or _trained_option(config, "tau_min", 15))
        ds: Dataset = fixed_order_tuples(videos, model.preprocessing, taus, seed=seed + 12345, length=samples)
        chance, stack_gap = 0.5, 1
    else:
        stack_gap = gap or _trained_option(config, "gap", DEFAULT_GAP)
        ds = fixed_questions(videos, model.preprocessing, question_config(model, gap=stack_gap), seed=seed + 12345, length=samples)
        chance = 1.0 / int(model.num_questions)
    out: dict[str, Any] = {
        "task": task_name, "checkpoint": str(checkpoint), "checkpoint_hash": checkpoint_hash(checkpoint), "data": str(data), "split": used_split,
        "videos": len(videos), "videos_sample": drawn, "chance": chance, "encoder": getattr(model, "encoder", "frames"), "pretext": pretext_accuracy(model, ds, device=dev),
    }  # fmt: skip
    if probe:
        out["probe"] = run_action_probe(model, data, probe_options or {}, stack_gap_frames=stack_gap, seed=seed, device=dev)
    return out


SPLIT_KEYS = {"probe_train": "train", "probe_test": "test", "ucf101": "ucf101", "hmdb51": "hmdb51", "split_number": "split", "split_lists": "lists_dir"}


def run_action_probe(model: torch.nn.Module, data: str, options: dict[str, Any], *, stack_gap_frames: int, seed: int, device: Any) -> dict[str, Any]:
    """The action probe on the labelled set ``options`` names (default: the world ``data``'s train/test splits).

    A world without train/test splits and no labelled set given: {"skipped_reason": ...}.
    """
    from avlearn.data.action_sets import action_split
    from avlearn.eval.probe import probe_actions

    split_kw = {SPLIT_KEYS[k]: v for k, v in options.items() if k in SPLIT_KEYS and v not in (None, "")}
    probe_kw = {k: v for k, v in options.items() if k not in SPLIT_KEYS}
    own_set = any(k in split_kw for k in ("train", "test", "ucf101", "hmdb51"))
    try:
        labelled = action_split(None if own_set else data, **split_kw)
    except FileNotFoundError as exc:
        if own_set:
            raise
        return {"skipped_reason": f"no labelled train/test split for the action probe ({exc}); give --probe-train/--probe-test, --ucf101 or --hmdb51"}
    return probe_actions(model, labelled, stack_gap_frames=stack_gap_frames, seed=seed, device=device, **probe_kw)


# evaluation keyword -> probe setting (the keywords are the `avlearn eval` flags of both temporal evaluations)
PROBE_KEYS = {
    "probe_train": "probe_train", "probe_test": "probe_test", "ucf101": "ucf101", "hmdb51": "hmdb51", "split_number": "split_number",
    "split_lists": "split_lists", "probe_moments": "moments", "probe_input": "input", "probe_pool": "pool", "probe_k": "k",
    "probe_random_inits": "random_inits", "supervised_epochs": "supervised_epochs", "probe_max_clips": "max_clips",
}  # fmt: skip


def _probe_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The action probe's settings from an evaluation's keyword arguments."""
    return {PROBE_KEYS[k]: v for k, v in kwargs.items() if k in PROBE_KEYS}


PROBE_DOC = """
    Action probe (``avlearn.eval.probe``): clip features of the frozen trunk (``probe_moments`` moments
    per clip; the input the trunk was trained on — frames, or stacks / dynamic images of K frames
    ``gap`` grid frames apart — unless ``probe_input=frame``; pooled by ``probe_pool``), a linear
    classifier and a ``probe_k``-NN fitted on labelled training videos and scored on held-out videos;
    ``probe_random_inits`` random-weight twins averaged, and the architecture trained supervised from
    scratch for ``supervised_epochs`` epochs (0: skipped). The labelled videos: the ``data`` world's
    splits/train.csv and splits/test.csv by default; ``probe_train`` + ``probe_test`` (two labelled
    sources), or ``ucf101`` / ``hmdb51`` (a local copy in its official layout; official split
    ``split_number``, split files in ``split_lists`` or found beside the videos). ``probe_max_clips``: at
    most this many clips of each side, a seeded draw made before decoding (0: all, the papers' protocol).
    ``max_videos``: held-out videos cached for the pretext questions, a seeded draw (0: all).
"""


@register_eval("shuffle_learn")
def eval_shuffle_learn(
    checkpoint: str,
    data: str,
    split: str = "test",
    samples: int = 1000,
    no_probe: bool = False,
    probe_train: str = "",
    probe_test: str = "",
    ucf101: str = "",
    hmdb51: str = "",
    split_number: int = 1,
    split_lists: str = "",
    probe_moments: int = 8,
    probe_input: str = "auto",
    probe_pool: str = "meanstd",
    probe_k: int = 5,
    probe_random_inits: int = 5,
    supervised_epochs: int = 30,
    tau_max: int = 0,
    tau_min: int = 0,
    max_videos: int = DEFAULT_MAX_VIDEOS,
    probe_max_clips: int = 0,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Held-out order-verification accuracy (balanced, chance 0.5) and the action probe of the frozen trunk.

    ``data``: the source whose ``split`` is evaluated (the whole source when it has no such split);
    ``tau_max``, ``tau_min``: the tuples' window and offsets in grid frames (0: as the checkpoint was trained, else 60 and 15).
    """
    opts = _probe_options(locals())
    return evaluate_temporal(
        "shuffle_learn", checkpoint, data, split=split, samples=samples, probe=not no_probe, probe_options=opts, tau_max=tau_max, tau_min=tau_min,
        max_videos=max_videos, seed=seed, device=device,
    )  # fmt: skip


@register_eval("odd_one_out")
def eval_odd_one_out(
    checkpoint: str,
    data: str,
    split: str = "test",
    samples: int = 1000,
    no_probe: bool = False,
    probe_train: str = "",
    probe_test: str = "",
    ucf101: str = "",
    hmdb51: str = "",
    split_number: int = 1,
    split_lists: str = "",
    probe_moments: int = 8,
    probe_input: str = "auto",
    probe_pool: str = "meanstd",
    probe_k: int = 5,
    probe_random_inits: int = 5,
    supervised_epochs: int = 30,
    gap: int = 0,
    max_videos: int = DEFAULT_MAX_VIDEOS,
    probe_max_clips: int = 0,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Held-out odd-one-out accuracy (chance 1/N) and the action probe of the frozen trunk.

    ``data``: the source whose ``split`` is evaluated (the whole source when it has no such split);
    ``gap``: grid frames between the frames of a subsequence and of a probe stack (0: as the checkpoint was trained, default 6).
    """
    opts = _probe_options(locals())
    return evaluate_temporal(
        "odd_one_out", checkpoint, data, split=split, samples=samples, probe=not no_probe, probe_options=opts, gap=gap, max_videos=max_videos, seed=seed,
        device=device,
    )  # fmt: skip


eval_shuffle_learn.__doc__ = (eval_shuffle_learn.__doc__ or "") + PROBE_DOC
eval_odd_one_out.__doc__ = (eval_odd_one_out.__doc__ or "") + PROBE_DOC
