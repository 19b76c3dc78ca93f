"""The resolved settings of one training run, and the error a run that cannot go on raises."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """The resolved settings of one run (stored in every checkpoint's config.json under "run")."""

    task: str
    data: str
    out: str
    preset: str = "small"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps (or a step count when >= 1)
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 1.0
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto | bf16 | fp16 | off
    options: dict[str, str] = field(default_factory=dict)
    val_data: str | None = None
    val_every: int | None = None
    val_batches: int | None = 50
    ckpt_every: int | None = None
    log_every: int = 10
    init: str | None = None  # start from this checkpoint's weights (fresh optimizer and schedule)


class TrainingError(RuntimeError):
    """A run cannot start or continue (bad settings, empty data, incompatible state)."""
