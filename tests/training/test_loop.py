"""The shared loop on a toy task: checkpoints, validation, exact resume, schedule, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import toy_task  # noqa: F401  (registers the "toy" task)

from training.config import TrainingError
from training.data_order import EpochSampler
from training.loop import train
from training.optim import cosine_with_warmup


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def _run(out: Path, **kw):
    kw.setdefault("steps", 12)
    kw.setdefault("lr", 1e-2)
    return train("toy", "unused", out, preset="toy", batch_size=4, workers=0, seed=3, device="cpu", val_every=4, progress=False, **kw)


def test_checkpoints_and_validation(tmp_path):
    torch.set_num_threads(1)
    summary = _run(tmp_path / "run")
    assert summary["step"] == 12 and summary["epoch"] >= 2  # 20 samples / batch 4 → 5 steps per epoch
    for name in ("final", "best", "last"):
        cfg = json.loads((tmp_path / "run" / name / "config.json").read_text())
        assert cfg["model"]["name"] == "toy" and cfg["run"]["batch_size"] == 4 and cfg["run"]["task"] == "toy"
        assert (tmp_path / "run" / name / "model.safetensors").stat().st_size > 0
    assert (tmp_path / "run" / "state" / "trainer.pt").exists()
    assert list((tmp_path / "run" / "tb").iterdir())
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [4, 8, 12] and all("mae" in r for r in val)
    best_step = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["run"]["step"]
    assert min(val, key=lambda r: r["loss"])["step"] == best_step
    assert val[-1]["loss"] < val[0]["loss"]  # it learns
    with pytest.raises(TrainingError, match="already holds a run"):
        _run(tmp_path / "run")


def test_resume_matches_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    _run(tmp_path / "full")
    part = _run(tmp_path / "resumed", stop_at=6)  # mid-epoch: 6 = 5 + 1
    assert part["step"] == 6 and not (tmp_path / "resumed" / "final").exists()
    rest = _run(tmp_path / "resumed", resume=True)
    assert rest["step"] == 12 and rest["steps_this_run"] == 6
    full, resumed = _losses(tmp_path / "full"), _losses(tmp_path / "resumed")
    assert sorted(full) == sorted(resumed) == list(range(1, 13))
    for step in full:
        assert math.isclose(full[step], resumed[step], rel_tol=1e-6, abs_tol=1e-8), step
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)


def test_resume_at_epoch_boundary(tmp_path):
    torch.set_num_threads(1)
    _run(tmp_path / "full", steps=8)
    _run(tmp_path / "r", steps=8, stop_at=5)  # exactly one epoch
    _run(tmp_path / "r", steps=8, resume=True)
    full, resumed = _losses(tmp_path / "full"), _losses(tmp_path / "r")
    assert all(math.isclose(full[s], resumed[s], rel_tol=1e-6) for s in full)


def test_no_val_split_and_errors(tmp_path):
    summary = _run(tmp_path / "nv", steps=3, options={"val": "none"})
    assert summary["best"] is None and summary["best_checkpoint"] == summary["final"]
    with pytest.raises(TrainingError, match="smaller than one batch"):
        _run(tmp_path / "tiny", steps=2, options={"n": "2"})
    with pytest.raises(TrainingError, match="no saved state"):
        _run(tmp_path / "none", resume=True)
    with pytest.raises(TrainingError, match="--steps or --epochs"):
        _run(tmp_path / "len", steps=None)


def test_epochs_length(tmp_path):
    summary = _run(tmp_path / "ep", steps=None, epochs=2)
    assert summary["step"] == 10


def test_schedule_and_sampler():
    f = cosine_with_warmup(100, 10, 0.0)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    a = list(EpochSampler(10, seed=1, epoch=0, rank=0, world_size=2))
    b = list(EpochSampler(10, seed=1, epoch=0, rank=1, world_size=2))
    assert len(a) == len(b) == 5 and not set(a) & set(b)
    assert list(EpochSampler(10, seed=1, epoch=0)) != list(EpochSampler(10, seed=1, epoch=1))
    assert list(EpochSampler(10, seed=1, epoch=0, skip=4)) == list(EpochSampler(10, seed=1, epoch=0))[4:]


def test_init_starts_a_new_run_from_checkpoint_weights(tmp_path):
    from safetensors.torch import load_file

    from avlearn.checkpoint import save_checkpoint
    from avlearn.models import create_model

    torch.set_num_threads(1)
    _run(tmp_path / "a")
    # lr 0: the warm-started run must keep exactly the weights it was given
    summary = _run(tmp_path / "b", steps=3, lr=0.0, init=str(tmp_path / "a" / "final"))
    assert summary["step"] == 3  # a new run: its own step count and schedule
    a, b = load_file(tmp_path / "a" / "final" / "model.safetensors"), load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "b" / "run_config.json").read_text())["init"] == str(tmp_path / "a" / "final")
    fresh = _losses(tmp_path / "a")[1]
    assert _losses(tmp_path / "b")[1] < fresh  # it starts where "a" ended, not from scratch

    with pytest.raises(TrainingError, match="--init"):
        _run(tmp_path / "c", init=str(tmp_path / "missing"))
    other = create_model("colorizer", "test_tiny")
    save_checkpoint(tmp_path / "other", other)
    with pytest.raises(TrainingError, match="do not fit"):
        _run(tmp_path / "d", init=str(tmp_path / "other"))
