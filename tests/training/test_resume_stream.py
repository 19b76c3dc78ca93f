"""Resume of a streaming AVC run by cursor: stopped (--stop-at, and kill -9 of a real process) at ~80 % of an
epoch over shards, the resumed run repeats the uninterrupted run's losses step by step (CPU, workers 0 and 2)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avlearn.testing import run_torchrun
from training.loop import train
from training.tasks import get_task

BATCH = 2


@pytest.fixture(scope="module")
def shards(tiny_world, tmp_path_factory) -> Path:
    from avlearn.data.prepare import prepare

    out = tmp_path_factory.mktemp("stream") / "shards"
    prepare(str(tiny_world / "splits" / "train.csv"), out, workers=1, frame_size_px=48, clips_per_shard=1, progress=False)
    return out


def epoch_order(shards: Path, workers: int) -> list[int]:
    """The data worker of each batch of epoch 0: the loader's round robin over the workers that still
    have a batch (each drops its own last partial batch)."""
    task = get_task("avc", {})
    ds = task.make_dataset(str(shards), task.build_model("test_tiny"), split="train", seed=0)
    n = max(1, workers)
    left = [len(list(ds.plan(w, n))) // BATCH for w in range(n)]
    order: list[int] = []
    while any(left):
        for w in range(n):
            if left[w]:
                order.append(w)
                left[w] -= 1
    return order


def stop_near_80_percent(order: list[int]) -> int:
    """~80 % of the epoch, moved to a batch due from a worker other than the loader's first when there is one
    (a resume must then restart the round robin at that worker)."""
    stop = round(0.8 * len(order))
    later = [s for s in range(stop, len(order)) if order[s] != 0]
    return later[0] if later and later[0] < 0.9 * len(order) else stop


def run(shards: Path, out: Path, workers: int, steps: int, **kw):
    torch.set_num_threads(1)
    return train("avc", str(shards), out, preset="test_tiny", steps=steps, batch_size=BATCH, device="cpu", seed=0, workers=workers, progress=False, **kw)


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def same_curve(a: dict[int, float], b: dict[int, float]) -> None:
    assert sorted(a) == sorted(b)
    for s in a:
        assert math.isclose(a[s], b[s], rel_tol=1e-6, abs_tol=1e-7), (s, a[s], b[s])


@pytest.mark.parametrize("workers", [0, 2])
def test_stop_at_80_percent_then_resume(shards, tmp_path, workers):
    order = epoch_order(shards, workers)
    per_epoch, stop = len(order), stop_near_80_percent(order)
    steps = per_epoch + 3  # stop inside epoch 0, run on into epoch 1
    assert workers == 0 or order[stop] == 1
    full = run(shards, tmp_path / "full", workers, steps, ckpt_every=1000)
    part = run(shards, tmp_path / "r", workers, steps, stop_at=stop)
    assert part["step"] == stop and part["epoch"] == 0
    state = torch.load(tmp_path / "r" / "state" / "trainer.pt", weights_only=False)
    assert state["data_cursor"][0]["workers"] == max(1, workers) and state["data_cursor"][0]["cursors"]
    rest = run(shards, tmp_path / "r", workers, steps, resume=True)
    print(
        f"workers={workers}: epoch {per_epoch} batches (workers {order}), full run {full['elapsed_sec']:.2f} s for {steps} steps; "
        f"resumed at step {stop}: first new batch after {rest['first_batch_sec']:.3f} s"
    )
    assert rest["step"] == steps and full["epoch"] == rest["epoch"] == 1
    same_curve(losses(tmp_path / "full"), losses(tmp_path / "r"))


def test_stop_at_epoch_end_then_resume(shards, tmp_path):
    """Stopped on the epoch's last batch: the cursors sit at the workers' ends, the resumed run goes on with epoch 1."""
    per_epoch = len(epoch_order(shards, 2))
    run(shards, tmp_path / "full", 2, per_epoch + 2, ckpt_every=1000)
    run(shards, tmp_path / "r", 2, per_epoch + 2, stop_at=per_epoch)
    rest = run(shards, tmp_path / "r", 2, per_epoch + 2, resume=True)
    assert rest["epoch"] == 1 and rest["steps_this_run"] == 2
    same_curve(losses(tmp_path / "full"), losses(tmp_path / "r"))


def test_resume_with_other_worker_count_is_refused(shards, tmp_path):
    from training.config import TrainingError

    run(shards, tmp_path / "r", 0, 10, stop_at=2)
    with pytest.raises(TrainingError, match="--workers 1"):
        run(shards, tmp_path / "r", 2, 10, resume=True)


@pytest.mark.slow
def test_kill_9_at_80_percent_then_resume(shards, tmp_path):
    """A real training process killed with SIGKILL (no chance to save) continues from its last saved cursor."""
    workers = 2
    order = epoch_order(shards, workers)
    per_epoch, kill_at = len(order), stop_near_80_percent(order)
    steps = per_epoch + 2
    run(shards, tmp_path / "full", workers, steps, ckpt_every=1000)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "avlearn.cli", "train", "avc", "--data", str(shards), "--out", str(out), "--preset", "test_tiny"]
    cmd += ["--steps", str(steps), "--batch-size", str(BATCH), "--device", "cpu", "--workers", str(workers), "--ckpt-every", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "metrics.jsonl").exists() and max(losses(out) or {0: 0}) >= kill_at:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"training ended before the kill: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its data workers, at once
    finally:
        proc.wait()
    saved = torch.load(out / "state" / "trainer.pt", weights_only=False)["step"]
    assert kill_at - 1 <= saved < steps
    rest = run(shards, out, workers, steps, resume=True)
    print(f"kill -9 at step >= {kill_at} of an epoch of {per_epoch}; state of step {saved}; first new batch after {rest['first_batch_sec']:.3f} s")
    same_curve(losses(tmp_path / "full"), losses(out))


DDP_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from training.loop import train
train("avc", {shards!r}, {out!r}, preset="test_tiny", steps={steps}, batch_size={batch}, device="cpu", seed=0, progress=False, stop_at={stop}, resume={resume})
"""


@pytest.mark.xdist_group("torchrun")  # one torchrun at a time under `pytest -n 2 --dist loadgroup`
@pytest.mark.slow
def test_ddp_two_processes_stop_then_resume(shards, tmp_path):
    """torchrun, 2 gloo processes: each rank keeps its own cursor; stopped at ~80 % of an epoch and resumed, the loss curve is the uninterrupted one."""
    task = get_task("avc", {})
    model = task.build_model("test_tiny")
    per_rank = [len(list(task.make_dataset(str(shards), model, split="train", seed=0, rank=r, world_size=2).plan())) // BATCH for r in range(2)]
    steps, stop = min(per_rank) + 2, round(0.8 * min(per_rank))

    def torchrun(out: Path, stop_at: int | None, resume: bool) -> None:
        script = tmp_path / f"ddp_{out.name}_{int(resume)}.py"
        script.write_text(DDP_SCRIPT.format(shards=str(shards), out=str(out), steps=steps, batch=BATCH, stop=stop_at, resume=resume))
        run_torchrun(script)

    torchrun(tmp_path / "full", None, False)
    torchrun(tmp_path / "r", stop, False)
    state = torch.load(tmp_path / "r" / "state" / "trainer.pt", weights_only=False)
    assert len(state["data_cursor"]) == 2 and all(c["cursors"] for c in state["data_cursor"])
    torchrun(tmp_path / "r", None, True)
    same_curve(losses(tmp_path / "full"), losses(tmp_path / "r"))
