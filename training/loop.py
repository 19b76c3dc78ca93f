"""The one training loop every self-supervised method runs through.

The loop knows nothing about the pretext task: a :class:`training.tasks.base.Task`
gives it a model, a dataset of sample dicts and a loss dict per batch. The loop
does the rest: AdamW with a linear-warmup + cosine schedule, AMP on CUDA (bf16,
or fp16 with a GradScaler), DistributedDataParallel under ``torchrun``, a tqdm
bar, TensorBoard scalars and ``metrics.jsonl``, validation with the best
checkpoint kept, and exact resume.

Run directory ``OUT``::

    OUT/final/     model.safetensors + config.json at the end (avlearn.checkpoint)
    OUT/best/      the checkpoint with the best validation metric
    OUT/last/      the latest periodic checkpoint
    OUT/state/     trainer.pt: weights, optimizer, scheduler, scaler, step, epoch,
                   batch position, best metric, RNG states of every rank (written atomically)
    OUT/tb/        TensorBoard event files
    OUT/metrics.jsonl   one line per optimizer step (train) and per validation

Resume (``resume=True``) reloads ``OUT/state`` and continues the same run: the
same step count, data order and RNG streams, so the loss curve matches a run that
was never stopped (exactly on CPU with ``workers=0``; data order is kept with any
worker count for map-style datasets, as the epoch order comes from ``(seed, epoch)``).

Throughput: ``workers="auto"`` (the default) gives the DataLoader ``min(8, cores per process - 1)``
workers, capped by the dataset (:func:`training.config.resolve_workers`; an iterable dataset gets
workers only when it declares ``shards_by_worker``). The step body has no host sync of its own (a
fp16 GradScaler still checks for inf every step): the task's scalars stay on the device and are averaged over ranks and copied to the host every ``log_every``
steps (and before each validation, checkpoint and the end), where a non-finite loss stops the run
(naming its step, at most ``log_every`` steps late); ``metrics.jsonl`` still gets one line per step.
``accum_steps`` K: each optimizer step sums the gradients of K loader batches (effective batch
K x ``batch_size`` per process; steps, the LR schedule and ``--steps`` count optimizer steps; under
DDP the gradients are all-reduced once per step). ``channels_last`` ("auto": on for conv models on
CUDA) and ``compile`` (torch.compile) change speed, not the result beyond float rounding.
DistributedDataParallel runs with ``find_unused_parameters`` only when the task or the model sets
that attribute.

Data order: for a map-style dataset the loop draws a permutation per epoch from
``seed + epoch``, deals it out to the ranks and skips the batches already seen
when resuming; a dataset with ``set_epoch(epoch)`` is told the epoch before each
pass (so per-sample randomness can be derived from ``(seed, epoch, index)``). An
iterable dataset is sharded by the task; on resume one with cursors
(:class:`training.data_order.DataCursor`: the checkpoint keeps the last consumed
position of each data worker) continues from them without decoding consumed data,
any other skips the batches already consumed in the epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import IterableDataset

from avlearn.device import resolve_device
from training import distributed as D
from training.config import TrainConfig, TrainingError, parse_workers, resolve_workers
from training.data_order import DataCursor, batch_size_of, batches_per_epoch, make_loader, resumable, to_device
from training.optim import cosine_with_warmup, param_groups, resolve_amp_dtype
from training.reporting import MetricsWriter, StepScalars, val_dataset, validate
from training.state import STATE_FILE, atomic_torch_save, publish_checkpoint, rng_state, set_rng_state

log = logging.getLogger(__name__)


class _TaskModule(torch.nn.Module):
    """Wraps model + task so DDP sees one forward whatever methods the task calls on the model."""

    def __init__(self, model: torch.nn.Module, task: Any) -> None:
        super().__init__()
        self.model = model
        self._task = [task]  # not a submodule

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._task[0].compute(self.model, batch)


def train(
    task_name: str,
    data: str,
    out: str | os.PathLike,
    *,
    preset: str = "small",
    steps: int | None = None,
    epochs: float | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    workers: int | str = "auto",
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
    options: dict[str, str] | None = None,
    val_data: str | None = None,
    val_every: int | None = None,
    ckpt_every: int | None = None,
    stop_at: int | None = None,
    progress: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Train ``task_name`` on ``data`` into the run directory ``out``; returns a summary dict.

    Args:
        steps / epochs: the run length (one of them; ``steps`` wins). Epochs need a sized dataset.
        workers: DataLoader worker processes, or "auto" (see :func:`training.config.resolve_workers`).
        options: task settings from ``--set key=value``.
        val_data: validation source; None asks the task for the "val" split of ``data``
            (validation is skipped when the task has none).
        val_every: validate every N steps (default: 10 times per run, and always at the end).
        ckpt_every: write OUT/last + OUT/state every N steps (default: with each validation).
        stop_at: stop after this step with the state saved, as if preempted (``resume`` continues).
        extra: further :class:`TrainConfig` fields (weight_decay, warmup, amp, grad_clip, log_every,
            accum_steps, channels_last, compile, ...).

    Raises:
        TrainingError: bad settings, a dataset smaller than one batch, or a state that does not fit.
    """
    cfg = TrainConfig(
        task=task_name,
        data=str(data),
        out=str(out),
        preset=preset,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        workers=workers,
        seed=seed,
        device=device,
        options=dict(options or {}),
        val_data=val_data,
        val_every=val_every,
        ckpt_every=ckpt_every,
        **extra,
    )
    out_dir = Path(out)
    state_path = out_dir / "state" / STATE_FILE
    state: dict[str, Any] | None = None
    if resume:
        if not state_path.exists():
            raise TrainingError(f"--resume: no saved state at {state_path}")
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        saved = TrainConfig(**state["config"])
        # The run continues as configured then; only the length and what sets the speed may change.
        if cfg.steps is not None or cfg.epochs is not None:
            saved.steps, saved.epochs = cfg.steps, cfg.epochs
        saved.device, saved.workers = cfg.device, cfg.workers
        saved.log_every, saved.channels_last, saved.compile = cfg.log_every, cfg.channels_last, cfg.compile
        cfg = saved
    elif state_path.exists():
        raise TrainingError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.steps is None and cfg.epochs is None:
        raise TrainingError("give --steps or --epochs")
    if cfg.batch_size < 1:
        raise TrainingError("batch size must be >= 1")
    if cfg.accum_steps < 1:
        raise TrainingError(f"--accum-steps must be >= 1, got {cfg.accum_steps}")
    if cfg.log_every < 1:
        raise TrainingError(f"--log-every must be >= 1, got {cfg.log_every}")
    if cfg.channels_last not in ("auto", "on", "off"):
        raise TrainingError(f"--channels-last must be auto, on or off, got {cfg.channels_last!r}")
    parse_workers(cfg.workers)

    from training.tasks import get_task

    info = D.env_dist_info()
    dev = resolve_device(cfg.device, local_rank=info.local_rank)
    info = D.init_distributed(dev)
    try:
        return _run(cfg, get_task(cfg.task, cfg.options), state, stop_at, dev, info, progress)
    finally:
        D.cleanup()


_HOST_KEYS = ("lr", "samples_per_sec", "step_sec", "epoch")


def _val_workers(requested: int | str, ds: Any, batch_size: int) -> int:
    """Validation loader workers: as for training, but 0 (not an error) for a stream that does not shard by worker."""
    if ds is None or (isinstance(ds, IterableDataset) and not getattr(ds, "shards_by_worker", False)):
        return 0
    return resolve_workers(requested, ds, batch_size, D.local_world_size())


def use_channels_last(setting: str, model: torch.nn.Module, dev: torch.device) -> bool:
    """``on`` / ``off`` as said; ``auto``: on CUDA for a model with 2-D convolutions (on CPU the gain measured mixed, docs/training.md)."""
    if setting != "auto":
        return setting == "on"
    return dev.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def to_channels_last(batch: Any) -> Any:
    """Every 4-D floating tensor of ``batch`` (B, C, H, W) in NHWC memory order (same shape and values)."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 and batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: to_channels_last(v) for k, v in batch.items()}
    return batch


def _init_weights(model: torch.nn.Module, path: str) -> None:
    """Warm start: copy a checkpoint's weights and buffers (e.g. fitted colour centres) into ``model``.

    Raises:
        TrainingError: the checkpoint is unreadable or does not fit the task's model.
    """
    from avlearn.checkpoint import CheckpointError, load_weights

    try:
        load_weights(model, path)
    except CheckpointError as exc:
        raise TrainingError(f"--init: {exc}") from exc
    log.info("initialised from %s", path)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _run(cfg: TrainConfig, task: Any, state: dict[str, Any] | None, stop_at: int | None, dev: torch.device, info: D.DistInfo, progress: bool) -> dict[str, Any]:
    out_dir = Path(cfg.out)
    _seed_all(cfg.seed)  # identical initial weights on every rank
    model = task.build_model(cfg.preset)
    if cfg.init and state is None:
        _init_weights(model, cfg.init)  # before the datasets: fitted buffers (colour centres) carry over
    _seed_all(cfg.seed + 7919 * info.rank)  # per-rank streams for dropout / augmentation
    train_ds = task.make_dataset(cfg.data, model, split="train", seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    val_ds = val_dataset(task, cfg, model, info)
    requested_workers = cfg.workers
    cfg = replace(cfg, workers=resolve_workers(requested_workers, train_ds, cfg.batch_size, D.local_world_size()))
    val_cfg = replace(cfg, workers=_val_workers(requested_workers, val_ds, cfg.batch_size))
    log.info("data workers: %d (train), %d (validation)", cfg.workers, val_cfg.workers)

    per_epoch = batches_per_epoch(train_ds, cfg, info)
    if per_epoch is not None:
        per_epoch = D.all_reduce_min(per_epoch, dev)
        if per_epoch < 1:
            raise TrainingError(f"the training data ({len(train_ds)} samples on this rank) is smaller than one batch of {cfg.batch_size}")  # type: ignore[arg-type]
    if cfg.steps is not None:
        total = int(cfg.steps)
    elif per_epoch is None:
        raise TrainingError("--epochs needs a dataset with a length; give --steps for a streaming dataset")
    else:
        total = max(1, math.ceil(float(cfg.epochs or 0) * per_epoch / cfg.accum_steps))  # optimizer steps
    val_every = cfg.val_every or max(1, total // 10)
    ckpt_every = cfg.ckpt_every or val_every

    model.to(dev)
    channels_last = use_channels_last(cfg.channels_last, model, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D weights in NHWC; the state dict keeps their values and shapes
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    warmup_steps = int(cfg.warmup) if cfg.warmup >= 1 else int(round(cfg.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, warmup_steps, cfg.min_lr_ratio))
    amp_dtype = resolve_amp_dtype(cfg.amp, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and dev.type == "cuda")

    step, epoch, batch_in_epoch = 0, 0, 0
    best: float | None = None
    data_cursor = DataCursor(int(cfg.workers))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, batch_in_epoch, best = state["step"], state["epoch"], state["batch_in_epoch"], state["best"]
        rngs = state["rng"]
        if len(rngs) != info.world_size:
            raise TrainingError(f"the state was saved by {len(rngs)} processes, this run has {info.world_size}")
        set_rng_state(rngs[info.rank])
        cursors = state.get("data_cursor")
        data_cursor = DataCursor(int(cfg.workers), cursors[info.rank] if cursors and resumable(train_ds) else None)
        log.info("resumed %s at step %d (epoch %d, batch %d)", out_dir, step, epoch, batch_in_epoch)

    wrapped: torch.nn.Module = _TaskModule(cast(torch.nn.Module, torch.compile(model)) if cfg.compile else model, task)
    if info.enabled:
        unused = bool(getattr(task, "find_unused_parameters", False) or getattr(model, "find_unused_parameters", False))
        wrapped = D.wrap_ddp(wrapped, dev, find_unused_parameters=unused)
    best_key, best_mode = getattr(task, "best_metric", ("loss", "min"))
    writer = MetricsWriter(out_dir, step, enabled=info.is_main)
    run_config = {**asdict(cfg), "total_steps": total, "world_size": info.world_size}
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))

    def save_state() -> None:
        rngs = D.all_gather_objects(rng_state())
        cursors = D.all_gather_objects(data_cursor.state()) if resumable(train_ds) else None
        if info.is_main:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch,
                    "best": best,
                    "rng": rngs,
                    "data_cursor": cursors,
                    "config": asdict(cfg),
                },
                out_dir / "state" / STATE_FILE,
            )
            publish_checkpoint(model, out_dir / "last", {**run_config, "step": step})

    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {cfg.task}", unit="step", dynamic_ncols=True)
    pin = dev.type == "cuda"
    start_time = time.perf_counter()
    start_step = step
    samples_seen = 0
    train_metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = {}
    stop = min(total, stop_at) if stop_at is not None else total
    wait_sec = 0.0
    first_batch_sec: float | None = None  # time from the loop's start to the first batch (the resume cost)
    pending = StepScalars()  # the scalars of the steps since the last sync, on the device
    accum = cfg.accum_steps
    micro = 0  # loader batches in the optimizer step being accumulated
    step_sec = 0.0  # compute time of the step being accumulated (its batches' waits excluded)

    def sync_metrics() -> None:
        """Copy the pending steps' scalars to the host (one sync): stop on a non-finite loss, log one line per step."""
        nonlocal train_metrics
        for s, values in pending.flush(dev):
            loss = values.get("loss", 0.0)
            if not math.isfinite(loss):
                raise TrainingError(f"loss is {loss} at step {s}; lower --lr or check the data")
            writer.scalars("train", s, values, tb=s % cfg.log_every == 0 or s == stop)
            train_metrics = {k: v for k, v in values.items() if k not in _HOST_KEYS}
        if bar is not None:
            bar.set_postfix({k: f"{v:.3f}" for k, v in train_metrics.items()})

    optimizer.zero_grad(set_to_none=True)
    while step < stop:
        loader = make_loader(train_ds, cfg, epoch=epoch, skip_batches=batch_in_epoch, info=info, train=True, pin=pin)
        if batch_in_epoch == 0:
            data_cursor.reset()
        seek = batch_in_epoch > 0 and data_cursor.apply(train_ds, epoch)  # before iter(): the workers get a copy
        it = iter(loader)
        if isinstance(train_ds, IterableDataset) and not seek:
            for _ in range(batch_in_epoch):  # resume without cursors: skip what this epoch already gave
                next(it, None)
        got_batch = False
        t_wait = time.perf_counter()
        for batch in it:
            got_batch = True
            t0 = time.perf_counter()
            if first_batch_sec is None:
                first_batch_sec = t0 - start_time
                if state is not None:
                    log.info("resumed: first batch after %.3f s", first_batch_sec)
            batch = data_cursor.observe(batch)
            wait_sec += t0 - t_wait
            model.train()
            batch = to_device(batch, dev)
            if channels_last:
                batch = to_channels_last(batch)
            micro += 1
            # DDP: all-reduce the gradients once per optimizer step, with the last micro-batch's backward
            no_sync = cast(Any, wrapped).no_sync() if info.enabled and micro < accum else nullcontext()
            with no_sync:
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    outputs = wrapped(batch)
                scaler.scale(outputs["loss"] / accum if accum > 1 else outputs["loss"]).backward()
            pending.add(outputs)
            batch_in_epoch += 1
            samples_seen += batch_size_of(batch) * info.world_size
            if micro < accum:
                step_sec += time.perf_counter() - t0
                t_wait = time.perf_counter()
                continue
            micro = 0
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lr_now = float(scheduler.get_last_lr()[0])
            scheduler.step()
            step += 1
            now = time.perf_counter()
            step_sec += now - t0
            # host times: on CUDA the device may still be working; the line of a sync point is exact
            host = {"lr": lr_now, "samples_per_sec": samples_seen / max(now - start_time, 1e-9), "step_sec": step_sec, "epoch": epoch}
            pending.end_step(step, host)
            step_sec = 0.0
            if bar is not None:
                bar.update(1)
            validate_now = val_ds is not None and (step % val_every == 0 or step == total)
            save_now = step % ckpt_every == 0 or step == stop
            if step % cfg.log_every == 0 or step >= stop or validate_now or save_now:
                sync_metrics()
            if validate_now and val_ds is not None:
                val_metrics = validate(wrapped, model, val_ds, val_cfg, info, dev, amp_dtype, pin)
                writer.scalars("val", step, val_metrics)
                score = val_metrics.get(best_key)
                if score is not None and (best is None or (score < best if best_mode == "min" else score > best)):
                    best = score
                    if info.is_main:
                        publish_checkpoint(model, out_dir / "best", {**run_config, "step": step, "val": val_metrics})
            if save_now:
                save_state()
            if step >= stop:
                break
            t_wait = time.perf_counter()
        else:
            if not got_batch and batch_in_epoch == 0:
                raise TrainingError("the training data gave no batch (empty, or smaller than one batch on this rank)")
            epoch += 1
            batch_in_epoch = 0  # a step being accumulated carries its gradients into the next epoch
            continue
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start_time
    summary: dict[str, Any] = {
        "out": str(out_dir),
        "step": step,
        "total_steps": total,
        "epoch": epoch,
        "train": train_metrics,
        "val": val_metrics,
        "best": {best_key: best} if best is not None else None,
        "elapsed_sec": elapsed,
        "samples_per_sec": samples_seen / max(elapsed, 1e-9),
        "data_wait_fraction": wait_sec / max(elapsed, 1e-9),
        "steps_this_run": step - start_step,
        "first_batch_sec": first_batch_sec,
    }
    if step >= total and info.is_main:
        summary["final"] = str(publish_checkpoint(model, out_dir / "final", {**run_config, "step": step, "val": val_metrics}))
        if val_ds is None:  # no validation: the final checkpoint is the one to use
            summary["best_checkpoint"] = summary["final"]
        else:
            summary["best_checkpoint"] = str(out_dir / "best")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    D.barrier()
    writer.close()
    return summary
