"""Throughput settings of the loop: data workers, metrics synced every N steps, gradient accumulation,
channels_last and torch.compile — each must leave the result as it was."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import toy_task  # noqa: F401  (registers the "toy" task)
from safetensors.torch import load_file
from toy_task import ToyData

from training.config import TrainingError, auto_workers, parse_workers, resolve_workers
from training.data_order import EpochSampler
from training.loop import train
from training.reporting import StepScalars

EXACT = {"dropout": "0", "noise": "0"}  # no randomness in the toy: runs that see the same data agree


def _rows(run: Path) -> list[dict]:
    return [r for r in (json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def _run(out: Path, **kw):
    kw.setdefault("steps", 12)
    kw.setdefault("batch_size", 4)
    kw.setdefault("workers", 0)
    return train("toy", "unused", out, preset="toy", lr=1e-2, seed=3, device="cpu", val_every=4, progress=False, **kw)


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield from ()


class _ShardedStream(_Stream):
    shards_by_worker = True
    max_workers = 2


def test_worker_counts():
    assert [auto_workers(c) for c in (1, 2, 4, 16, 64)] == [0, 1, 3, 8, 8]  # min(8, cores - 1)
    assert auto_workers(16, local_processes=4) == 3 and auto_workers(16, cap=2) == 2 and auto_workers(4, cap=0) == 0
    assert parse_workers("auto") == "auto" and parse_workers("3") == 3 and parse_workers(0) == 0
    for bad in ("-1", "many", -2, True):
        with pytest.raises(TrainingError, match="--workers"):
            parse_workers(bad)
    toy = ToyData(20, 0)
    assert resolve_workers(5, toy, 4) == 5  # a count is used as given
    assert resolve_workers("auto", toy, 4) <= 5  # at most the 5 batches of an epoch
    assert resolve_workers("auto", ToyData(4, 0), 4) <= 1 and resolve_workers("auto", ToyData(3, 0), 4) == 0  # one worker per batch at most
    # a stream that does not split its data between workers would repeat it in each
    assert resolve_workers("auto", _Stream(), 4) == 0 and resolve_workers(0, _Stream(), 4) == 0
    with pytest.raises(TrainingError, match="--workers 0"):
        resolve_workers(2, _Stream(), 4)
    assert resolve_workers(3, _ShardedStream(), 4) == 3 and resolve_workers("auto", _ShardedStream(), 4) <= 2


def test_worker_count_keeps_the_data_order(tmp_path):
    """Map-style data: the order comes from (seed, epoch), so 0 workers, 2 workers, and a resume with
    auto workers give the same run."""
    torch.set_num_threads(1)
    _run(tmp_path / "w0", options=EXACT)
    _run(tmp_path / "w2", options=EXACT, workers=2, stop_at=6)
    assert json.loads((tmp_path / "w2" / "run_config.json").read_text())["workers"] == 2  # the count used is recorded
    summary = _run(tmp_path / "w2", options=EXACT, workers="auto", resume=True)
    assert summary["step"] == 12
    a, b = _rows(tmp_path / "w0"), _rows(tmp_path / "w2")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)
    wa, wb = _weights(tmp_path / "w0"), _weights(tmp_path / "w2")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-7) for k in wa)
    assert json.loads((tmp_path / "w2" / "run_config.json").read_text())["workers"] == resolve_workers("auto", ToyData(20, 0), 4)


def test_metrics_are_synced_every_n_steps(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    syncs: list[int] = []
    flush = StepScalars.flush

    def counted(self, device):
        rows = flush(self, device)
        if rows:
            syncs.append(rows[-1][0])
        return rows

    monkeypatch.setattr(StepScalars, "flush", counted)
    _run(tmp_path / "every1", log_every=1)
    assert syncs == list(range(1, 13))
    syncs.clear()
    _run(tmp_path / "every5", log_every=5)
    assert syncs == [4, 5, 8, 10, 12]  # every 5 steps, and before each validation / checkpoint (every 4) and the end
    a, b = _rows(tmp_path / "every1"), _rows(tmp_path / "every5")
    assert [r["step"] for r in b] == list(range(1, 13))  # still one line per step
    for ra, rb in zip(a, b):
        assert math.isclose(ra["loss"], rb["loss"], rel_tol=1e-6) and ra["lr"] == rb["lr"] and ra["epoch"] == rb["epoch"]
        assert rb["samples_per_sec"] > 0 and rb["step_sec"] > 0


def test_step_scalars_average_micro_batches():
    s = StepScalars()
    s.add({"loss": torch.tensor(1.0), "acc": torch.tensor([0.5]), "logits": torch.zeros(4, 2)})
    s.add({"loss": torch.tensor(3.0), "acc": torch.tensor([1.0]), "logits": torch.zeros(4, 2)})
    s.end_step(7, {"lr": 0.1})
    s.add({"loss": torch.tensor(float("nan")), "acc": torch.tensor(0.0)})
    s.end_step(8, {"lr": 0.2})
    assert len(s) == 2
    (s7, r7), (s8, r8) = s.flush(torch.device("cpu"))
    assert (s7, r7) == (7, {"acc": 0.75, "loss": 2.0, "lr": 0.1}) and s8 == 8 and math.isnan(r8["loss"])
    assert s.flush(torch.device("cpu")) == [] and len(s) == 0
    with pytest.raises(ValueError, match="changed"):
        s.add({"other": torch.tensor(1.0)})


def test_a_nan_loss_stops_the_run_at_the_next_sync(tmp_path):
    torch.set_num_threads(1)
    order = list(EpochSampler(20, seed=3, epoch=0))
    bad_step = order.index(order[9]) // 4 + 1  # sample order[9] is in the 3rd batch of epoch 0
    errors = {}
    for every in (1, 5):
        with pytest.raises(TrainingError, match="lower --lr or check the data") as exc:
            _run(tmp_path / f"nan{every}", log_every=every, options={"nan_sample": str(order[9])})
        errors[every] = str(exc.value)
        logged = [r["step"] for r in _rows(tmp_path / f"nan{every}")]
        assert logged == list(range(1, bad_step))  # the finite steps before it are logged, nothing after
        assert not (tmp_path / f"nan{every}" / "final").exists()
    assert errors[1] == errors[5] and re.search(rf"loss is nan at step {bad_step}\b", errors[5])


def test_accumulation_equals_the_bigger_batch(tmp_path):
    """K=2 batches of 2 per optimizer step = one batch of 4: same samples per step (the order comes
    from (seed, epoch), 16 samples leave no remainder) and the mean loss over them. Holds for models
    without batch statistics (the toy); with BatchNorm each micro-batch is normalised on its own."""
    torch.set_num_threads(1)
    opts = {**EXACT, "n": "16"}
    big = _run(tmp_path / "b4", steps=None, epochs=2, options=opts)
    acc = _run(tmp_path / "b2x2", steps=None, epochs=2, options=opts, batch_size=2, accum_steps=2)
    assert big["step"] == acc["step"] == 8  # --epochs counts optimizer steps of 4 samples
    a, b = _rows(tmp_path / "b4"), _rows(tmp_path / "b2x2")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    assert [r["lr"] for r in a] == [r["lr"] for r in b]  # the schedule counts optimizer steps
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    wa, wb = _weights(tmp_path / "b4"), _weights(tmp_path / "b2x2")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    with pytest.raises(TrainingError, match="--accum-steps"):
        _run(tmp_path / "bad", accum_steps=0)


def test_accumulation_resumes_exactly_across_an_epoch_boundary(tmp_path):
    """18 samples in batches of 2 = 9 per epoch: with K=2 step 5 takes the last batch of epoch 0 and the first of epoch 1."""
    torch.set_num_threads(1)
    kw = {"steps": 8, "batch_size": 2, "accum_steps": 2, "options": {"n": "18"}}
    _run(tmp_path / "full", **kw)
    _run(tmp_path / "r", stop_at=4, **kw)
    _run(tmp_path / "r", resume=True, **kw)
    a, b = _rows(tmp_path / "full"), _rows(tmp_path / "r")
    assert [r["epoch"] for r in a] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)


def test_channels_last_gives_the_same_run(tiny_world, tmp_path):
    torch.set_num_threads(1)
    kw = {"preset": "test_tiny", "steps": 3, "batch_size": 4, "lr": 1e-3, "device": "cpu", "seed": 0, "workers": 0, "val_every": 3, "progress": False}
    train("avc", str(tiny_world), tmp_path / "off", channels_last="off", **kw)
    train("avc", str(tiny_world), tmp_path / "on", channels_last="on", **kw)
    a, b = _rows(tmp_path / "off"), _rows(tmp_path / "on")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    wa, wb = _weights(tmp_path / "off"), _weights(tmp_path / "on")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    with pytest.raises(TrainingError, match="--channels-last"):
        train("avc", str(tiny_world), tmp_path / "bad", channels_last="yes", **kw)


@pytest.mark.slow
def test_compile_runs_on_cpu(tmp_path):
    """torch.compile (inductor, CPU): about 30 s to compile the toy on first use."""
    torch.set_num_threads(1)
    _run(tmp_path / "plain", steps=4, options=EXACT)
    _run(tmp_path / "compiled", steps=4, options=EXACT, compile=True)
    a, b = _rows(tmp_path / "plain"), _rows(tmp_path / "compiled")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)


def test_cli_rejects_bad_throughput_flags(capsys):
    from avlearn.cli import main as cli_main

    base = ["train", "avc", "--data", "x", "--out", "y", "--steps", "1"]
    for flag, value in (("--workers", "many"), ("--accum-steps", "0"), ("--log-every", "0"), ("--channels-last", "yes")):
        assert cli_main([*base, flag, value]) == 2
        assert flag in capsys.readouterr().err
