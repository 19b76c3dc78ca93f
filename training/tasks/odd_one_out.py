"""Task "odd_one_out": Odd-One-Out networks (Fernando et al. CVPR 2017), and `avlearn eval odd_one_out`.

Each split is decoded once into an in-memory frame cache at the model's size; questions are drawn
from it by :class:`avlearn.pretext.odd_one_out.OddOneOutQuestions`. N (``num_questions``) and K
(``frames_per_subsequence``) come from the model; ``--set encoder=`` picks the subsequence
encoder (stacked, frames, dynamic; see avlearn/models/odd_one_out.py).

Options (``--set key=value``):
    gap=6                 grid frames between consecutive frames of a subsequence
    spread=0              > 0: all N subsequences start within this many grid frames of one anchor
                          (avlearn.pretext.odd_one_out.QuestionConfig.spread)
    encoder=stacked       stacked | frames | dynamic (a model hyper-parameter, used when building the model)
    pool=avg              the trunk's grid pool, avg | max (a model hyper-parameter)
    motion_quantile, stride, max_frames, max_videos, cut_threshold, default_fps, augment, jitter,
    samples_per_epoch, val_samples: as for shuffle_learn (training/tasks/shuffle_learn.py)

Samples: {"frames": (N, K, 3, H, W) float normalised, each subsequence in presentation order,
"label": position of the odd one}. Loss: N-way cross-entropy on ``logits`` (B, N).
Best checkpoint: highest validation accuracy (chance 1/N).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training.tasks.base import Task, option_flag, register_eval, register_task
from training.tasks.shuffle_learn import (
    COMMON_OPTIONS,
    TRUNK_OPTIONS,
    TemporalDataset,
    build_temporal_model,
    check_options,
    classification_step,
    evaluate_temporal,
    load_cached_videos,
    samples_per_epoch,
    split_source,
)


class OddOneOutDataset(TemporalDataset):
    """Odd-One-Out samples {"frames": (N, K, 3, H, W), "label": long} over cached videos."""

    def __init__(self, videos, preprocessing: dict[str, Any], cfg, *, seed: int, length: int, augment: bool, fixed: bool, jitter: float = 0.0) -> None:
        from avlearn.pretext.odd_one_out import OddOneOutQuestions

        super().__init__(videos, preprocessing, seed=seed, length=length, augment=augment, fixed=fixed, jitter=jitter)
        self.questions = OddOneOutQuestions(videos, cfg, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.questions.set_epoch(self.epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        q = self.questions.question(i)
        return {"frames": self.frames(q.video, np.array(q.subsequences), i), "label": torch.tensor(q.odd, dtype=torch.long)}


@register_task
class OddOneOutTask(Task):
    """Odd-One-Out: which of N subsequences of a video is not in temporal order?"""

    name = "odd_one_out"
    default_model = "odd_one_out"
    best_metric = ("acc", "max")
    OPTIONS = COMMON_OPTIONS | {"gap", "encoder", "spread"}

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, self.OPTIONS)
        self._train_data: str | None = None

    def build_model(self, preset: str) -> torch.nn.Module:
        return build_temporal_model(self, preset, TRUNK_OPTIONS + ("encoder",))

    def question_config(self, model: torch.nn.Module):
        from avlearn.pretext.odd_one_out import QuestionConfig

        return QuestionConfig(
            num_questions=int(model.num_questions), frames_per_subsequence=int(model.frames_per_subsequence), gap=int(self.options.get("gap", 6)),
            motion_quantile=float(self.options.get("motion_quantile", 0.5)), spread=int(self.options.get("spread", 0)),
        )

    def make_dataset(self, data: str, model: torch.nn.Module, *, split: str, seed: int, rank: int = 0, world_size: int = 1) -> Dataset:
        train = split == "train"
        if train:
            self._train_data = str(data)
        videos = load_cached_videos(self, split_source(data, split, self._train_data), model.preprocessing)
        if train:
            return OddOneOutDataset(
                videos, model.preprocessing, self.question_config(model), seed=seed, length=samples_per_epoch(self.options, len(videos)),
                augment=option_flag(self.options.get("augment"), True), fixed=False, jitter=float(self.options.get("jitter", 0.0)),
            )
        return self.eval_dataset(videos, model, seed=seed + 1, length=int(self.options.get("val_samples", 512)))

    def eval_dataset(self, videos, model: torch.nn.Module, *, seed: int, length: int) -> Dataset:
        """Fixed questions for evaluation."""
        return OddOneOutDataset(videos, model.preprocessing, self.question_config(model), seed=seed, length=length, augment=False, fixed=True)

    def chance(self, model: torch.nn.Module) -> float:
        return 1.0 / int(model.num_questions)

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return classification_step(model, batch)


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
        probe_blocks=probe_blocks, probe_random_inits=probe_random_inits, probe_stacks=probe_stacks, options={"gap": str(gap or ""), "max_videos": str(max_videos or "")}, seed=seed, device=device,
    )
