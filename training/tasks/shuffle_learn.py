"""Task "shuffle_learn": temporal order verification (Misra et al. ECCV 2016), and `avlearn eval shuffle_learn`.

Each split is decoded once into an in-memory frame cache at the model's size
(:func:`avlearn.pretext.motion.load_videos`); tuples are drawn from it by
:class:`avlearn.pretext.shuffle_learn.ShuffleLearnTuples`.

Options (``--set key=value``):
    tau_max=60, tau_min=15       window / negative distances in grid frames of the video
    positive_fraction=0.5        share of positive training tuples (paper: ~0.25); validation is balanced
    reverse=true                 show tuples backwards half the time (order, not direction, is verified)
    middle_margin=0.2            c at least this fraction of the window from b and d
    pool=avg                     the trunk's grid pool, avg | max (a model hyper-parameter, avlearn/models/_trunk.py)
    motion_quantile=0.5          sample windows from the busiest half of each video (0 = anywhere)
    stride=1                     cache every stride-th grid frame (raw sources)
    max_frames=N                 cache at most N frames per video (default: all)
    max_videos=N                 use at most N videos per split (default: all)
    cut_threshold=40             grey-level frame difference treated as a shot cut
    default_fps=25               frame rate assumed for shard clips whose file cannot be probed
    augment=true                 one random crop (60-100% area) + flip, the same for every frame of a sample
    jitter=0                     > 0: each frame's crop also moves on its own by up to this fraction of the
                                 frame (spatial jittering, Lee et al. ICCV 2017; training/augment.py)
    samples_per_epoch=N          (default 200 per training video, at least 2000)
    val_samples=512              fixed, balanced validation tuples

Samples: {"frames": (3, 3, H, W) float normalised, in presentation order, "label": 1 = in order}.
Loss: cross-entropy on the model's ``logits`` (B, 2). Best checkpoint: highest validation accuracy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from avlearn.pretext import resolve_split
from training.augment import crop_flip
from training.tasks.base import Task, option_flag, register_eval, register_task

log = logging.getLogger(__name__)

COMMON_OPTIONS = {
    "stride", "max_frames", "max_videos", "cut_threshold", "default_fps", "augment", "samples_per_epoch", "val_samples", "motion_quantile", "pool", "jitter",
}  # fmt: skip
TRUNK_OPTIONS = ("pool",)  # options that are model hyper-parameters of the trunk (avlearn/models/_trunk.py)


def build_temporal_model(task: Task, preset: str, keys: tuple[str, ...] = TRUNK_OPTIONS) -> torch.nn.Module:
    """The task's model for ``preset`` with the model hyper-parameters among its options (``keys``) as overrides."""
    from avlearn.models import create_model

    overrides = {k: task.options[k] for k in keys if k in task.options}
    return create_model(task.options.get("model", task.default_model), preset, **overrides)


def check_options(task: str, options: dict[str, str], known: set[str]) -> None:
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown {task} option(s) {sorted(unknown)}; known: {sorted(known)}")


def split_source(data: str, split: str, train_data: str | None) -> str:
    """The source of ``split`` (as in training/tasks/avc.py): a --val-data given apart from --data is used as it is
    unless it has its own splits.

    Raises:
        FileNotFoundError: no such split (the loop then trains without validation).
    """
    explicit = split != "train" and train_data is not None and str(data) != train_data
    try:
        return resolve_split(data, split)
    except FileNotFoundError:
        if not explicit:
            raise
        return str(data)


def load_cached_videos(task: Task, src: str, preprocessing: dict[str, Any]):
    """The frame caches of source ``src`` at the model's size, per the task's options.

    Raises:
        ValueError: nothing could be decoded.
    """
    from avlearn.pretext.motion import DEFAULT_CUT_THRESHOLD, load_videos

    opts = task.options
    max_frames = int(opts["max_frames"]) if opts.get("max_frames") else None
    max_videos = int(opts["max_videos"]) if opts.get("max_videos") else None
    videos, skipped = load_videos(
        src, size_px=preprocessing["image_size_px"], stride=int(opts.get("stride", 1)), max_frames=max_frames, max_videos=max_videos,
        default_fps=float(opts.get("default_fps", 25.0)), cut_threshold=float(opts.get("cut_threshold", DEFAULT_CUT_THRESHOLD)),
    )
    if not videos:
        raise ValueError(f"{task.name}: no video could be decoded from {src} ({len(skipped)} skipped)")
    mb = sum(v.frames.nbytes for v in videos) / 2**20
    log.info("%s: %d videos, %d frames (%.0f MB) cached from %s; %d skipped", task.name, len(videos), sum(len(v) for v in videos), mb, src, len(skipped))
    return videos


def samples_per_epoch(options: dict[str, str], n_videos: int) -> int:
    return int(options.get("samples_per_epoch", max(2000, 200 * n_videos)))


class TemporalDataset(Dataset):
    """Base of the temporal datasets: frame caches + Preprocessor + a seeded per-item augmentation."""

    def __init__(self, videos, preprocessing: dict[str, Any], *, seed: int, length: int, augment: bool, fixed: bool, jitter: float = 0.0) -> None:
        from avlearn.embed.preprocess import Preprocessor

        self.videos = videos
        self.pre = Preprocessor.from_config(preprocessing)
        self.seed, self.length, self.augment, self.fixed, self.jitter = int(seed), int(length), augment, fixed, float(jitter)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = 0 if self.fixed else int(epoch)

    def __len__(self) -> int:
        return self.length

    def frames(self, video: int, indices: np.ndarray, i: int) -> torch.Tensor:
        """Cached frames ``indices`` (any shape) of ``video`` → float (*indices.shape, 3, H, W), one augmentation for all."""
        idx = np.asarray(indices)
        x = self.videos[video].frames[idx.reshape(-1)]
        if self.augment:
            x = crop_flip(x, np.random.default_rng([self.seed, self.epoch, int(i), 7]), jitter=self.jitter)
        out = self.pre.images(x)
        return out.reshape(*idx.shape, *out.shape[1:])


class ShuffleLearnDataset(TemporalDataset):
    """Shuffle-and-Learn samples {"frames": (3, 3, H, W), "label": long} over cached videos."""

    def __init__(self, videos, preprocessing: dict[str, Any], cfg, *, seed: int, length: int, augment: bool, fixed: bool, balanced: bool, jitter: float = 0.0) -> None:
        from avlearn.pretext.shuffle_learn import ShuffleLearnTuples

        super().__init__(videos, preprocessing, seed=seed, length=length, augment=augment, fixed=fixed, jitter=jitter)
        self.tuples = ShuffleLearnTuples(videos, cfg, seed=seed, balanced=balanced)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.tuples.set_epoch(self.epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = self.tuples.tuple(i)
        return {"frames": self.frames(t.video, np.array(t.indices), i), "label": torch.tensor(t.label, dtype=torch.long)}


def tuple_config(options: dict[str, str], *, balanced: bool = False):
    from avlearn.pretext.shuffle_learn import TupleConfig

    return TupleConfig(
        tau_max=int(options.get("tau_max", 60)), tau_min=int(options.get("tau_min", 15)),
        positive_fraction=0.5 if balanced else float(options.get("positive_fraction", 0.5)),
        reverse=option_flag(options.get("reverse"), True), middle_margin=float(options.get("middle_margin", 0.2)),
        motion_quantile=float(options.get("motion_quantile", 0.5)),
    )


def classification_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    logits = model(batch["frames"])["logits"].float()
    label = batch["label"]
    return {"loss": F.cross_entropy(logits, label), "acc": (logits.argmax(dim=1) == label).float().mean().detach()}


@register_task
class ShuffleLearnTask(Task):
    """Shuffle-and-Learn: is the middle frame of three between the other two in time?"""

    name = "shuffle_learn"
    default_model = "shuffle_learn"
    best_metric = ("acc", "max")
    OPTIONS = COMMON_OPTIONS | {"tau_max", "tau_min", "positive_fraction", "reverse", "middle_margin"}

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, self.OPTIONS)
        self.cfg = tuple_config(self.options)
        self.val_cfg = tuple_config(self.options, balanced=True)
        self._train_data: str | None = None

    def build_model(self, preset: str) -> torch.nn.Module:
        return build_temporal_model(self, preset)

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        train = split == "train"
        if train:
            self._train_data = str(data)
        videos = load_cached_videos(self, split_source(data, split, self._train_data), model.preprocessing)
        # every rank keeps all videos: the loop's sampler deals the item indices out to ranks
        if train:
            return ShuffleLearnDataset(
                videos, model.preprocessing, self.cfg, seed=seed, length=samples_per_epoch(self.options, len(videos)),
                augment=option_flag(self.options.get("augment"), True), fixed=False, jitter=float(self.options.get("jitter", 0.0)), balanced=False,
            )
        return self.eval_dataset(videos, model, seed=seed + 1, length=int(self.options.get("val_samples", 512)))

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return classification_step(model, batch)

    def eval_dataset(self, videos, model: torch.nn.Module, *, seed: int, length: int) -> Dataset:
        """Fixed, balanced tuples for evaluation."""
        return ShuffleLearnDataset(videos, model.preprocessing, self.val_cfg, seed=seed, length=length, augment=False, fixed=True, balanced=True)

    def chance(self, model: torch.nn.Module) -> float:
        return 0.5


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
        probe_blocks=probe_blocks, probe_random_inits=probe_random_inits, options={"tau_max": str(tau_max), "tau_min": str(tau_min), "max_videos": str(max_videos or "")}, seed=seed, device=device,
    )


# ---------------------------------------------------------------- evaluation shared by both temporal tasks


@torch.no_grad()
def pretext_accuracy(model: torch.nn.Module, ds: Dataset, *, device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on every sample of a fixed dataset."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
        frames = torch.stack([it["frames"] for it in items]).to(device)
        label = torch.stack([it["label"] for it in items]).to(device)
        logits = model(frames)["logits"].float()
        loss += float(F.cross_entropy(logits, label, reduction="sum"))
        correct += int((logits.argmax(dim=1) == label).sum())
        n += len(items)
    return {"accuracy": correct / max(n, 1), "loss": loss / max(n, 1), "samples": n}


def evaluate_temporal(
    task_name: str, checkpoint: str, data: str, *, split: str, labels: str | None, samples: int, probe: bool, probe_frames: int, folds: int,
    options: dict[str, str], seed: int, device: str, probe_blocks: bool = False, probe_random_inits: int = 5, probe_stacks: bool = False,
) -> dict[str, Any]:
    """Pretext accuracy on held-out videos of ``data`` + the probe of ``avlearn.eval.probe`` (both temporal tasks)."""
    from avlearn.checkpoint import checkpoint_hash, load_checkpoint
    from avlearn.embed.embedder import resolve_device
    from training.tasks.base import get_task

    dev = resolve_device(device)
    model, config = load_checkpoint(checkpoint, device=dev)
    if config["model"]["name"] != task_name:
        raise ValueError(f"{checkpoint} holds a {config['model']['name']!r} model, not {task_name!r}")
    trained_with = config.get("run", {}).get("options", {})
    # an option left empty takes the value the checkpoint was trained with (e.g. odd_one_out's gap)
    task = get_task(task_name, {k: v or trained_with.get(k, "") for k, v in options.items() if v or trained_with.get(k)})
    try:
        src, used_split = resolve_split(data, split), split
    except FileNotFoundError:  # no such split: evaluate the source as given
        src, used_split = str(data), "all"
    videos = load_cached_videos(task, src, model.preprocessing)
    ds = task.eval_dataset(videos, model, seed=seed + 12345, length=samples)
    out: dict[str, Any] = {
        "task": task_name, "checkpoint": str(checkpoint), "checkpoint_hash": checkpoint_hash(checkpoint), "data": str(data), "split": used_split,
        "videos": len(videos), "chance": task.chance(model),
    }
    out["pretext"] = pretext_accuracy(model, ds, device=dev)
    if probe:
        from avlearn.eval.probe import probe_trunk

        out["probe"] = probe_trunk(
            model, labels or data, frames_per_clip=probe_frames, folds=folds, seed=seed, device=dev, blocks=probe_blocks, random_inits=probe_random_inits,
            stacks=probe_stacks, stack_gap_frames=task.question_config(model).gap if probe_stacks else 1,  # stacks: odd_one_out only
        )  # fmt: skip
    return out
