"""DDP on CPU: torchrun with 2 gloo processes equals one process with the doubled batch (also with
gradient accumulation, and for a model that leaves a parameter unused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import toy_task  # noqa: F401

from avlearn.testing import run_torchrun
from training.distributed import DistInfo, env_dist_info
from training.loop import train

HERE = Path(__file__).resolve().parent
OPTS = {"dropout": "0", "noise": "0"}  # no randomness: the two runs must agree exactly

SCRIPT = """
import sys, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
import toy_task
from training.loop import train
train("toy", "unused", {out!r}, preset="toy", steps=6, batch_size={batch}, accum_steps={accum}, lr=1e-2, seed=5, device="cpu", options={opts!r}, val_every=3, progress=False)
"""


def test_env_dist_info(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = env_dist_info()
    assert info == DistInfo(1, 2, 1) and not info.is_main and info.shard_slice == (1, 2)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert env_dist_info().world_size == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch, accum, extra",
    [
        (4, 1, {}),
        (2, 2, {"n": "16"}),  # 2 processes x 2 batches of 2 per step, all-reduced once (16 samples: no remainder to drop)
        (4, 1, {"unused": "true"}),  # a spare parameter: runs because the task sets find_unused_parameters
    ],
)
@pytest.mark.xdist_group("torchrun")  # one torchrun at a time under `pytest -n 2 --dist loadgroup`
def test_torchrun_two_cpu_processes(tmp_path, batch, accum, extra):
    torch.set_num_threads(1)
    opts = {**OPTS, **extra}
    script = tmp_path / "ddp_toy.py"
    script.write_text(SCRIPT.format(here=str(HERE), out=str(tmp_path / "ddp"), opts=opts, batch=batch, accum=accum))
    run_torchrun(script)
    run_cfg = json.loads((tmp_path / "ddp" / "final" / "config.json").read_text())["run"]
    assert run_cfg["world_size"] == 2 and run_cfg["step"] == 6
    train("toy", "unused", tmp_path / "single", preset="toy", steps=6, batch_size=8, lr=1e-2, seed=5, device="cpu", options=opts, val_every=3, progress=False)

    def losses(run: Path) -> list[float]:
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["split"] == "train"]

    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ddp" / "final" / "model.safetensors")
    b = load_file(tmp_path / "single" / "final" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
