"""Shuffle-and-Learn, Odd-One-Out and colorization trained from frame shards (avlearn prepare --kind frames),
and under DDP (2 gloo processes) every training sequence visited once per epoch."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import torch

from avlearn.data.frame_shards import sequence_refs
from avlearn.data.prepare import prepare
from avlearn.testing import run_torchrun

OPTIONS = {
    "shuffle_learn": {"tau_max": "20", "tau_min": "5", "samples_per_sequence": "2", "val_samples": "8", "max_shards": "1"},
    "odd_one_out": {"gap": "3", "samples_per_sequence": "2", "val_samples": "4", "max_shards": "1"},
    "colorization": {"clips_per_sequence": "2", "val_clips": "4", "max_shards": "1"},
}


def _subset(world: Path, split: str, n: int, out: Path) -> Path:
    """A manifest of the first ``n`` clips of a split (absolute paths)."""
    rows = list(csv.DictReader(open(world / "splits" / f"{split}.csv")))[:n]
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "path": str((world / "splits" / r["path"]).resolve())})
    return out


@pytest.fixture(scope="module")
def frame_shards(motion_world, tmp_path_factory) -> tuple[Path, Path]:
    """Train (8 clips, 3 shards) and val (2 clips) frame shards of the motion world: 12.5 fps, short side 80 (the colorizer's decode size)."""
    root = tmp_path_factory.mktemp("frame_shards")
    out = []
    for split, n in (("train", 8), ("val", 2)):
        src = _subset(motion_world, split, n, root / f"{split}.csv")
        prepare(src, root / split, kind="frames", fps=12.5, short_px=80, clips_per_shard=3, progress=False)
        out.append(root / split)
    return out[0], out[1]


@pytest.mark.parametrize("task", ["shuffle_learn", "odd_one_out", "colorization"])
def test_train_from_frame_shards(frame_shards, tmp_path, task):
    from training.loop import train

    train_dir, val_dir = frame_shards
    n = len(sequence_refs(train_dir))
    val = None if task == "colorization" else str(val_dir)  # colorization validates on each sequence's last frames
    summary = train(
        task, str(train_dir), tmp_path / task, preset="test_tiny", epochs=1, batch_size=4, device="cpu", options=OPTIONS[task], val_data=val, progress=False
    )
    assert summary["total_steps"] == n * 2 // 4 == summary["step"]  # one epoch = 2 samples of each of the n sequences
    assert torch.isfinite(torch.tensor(summary["train"]["loss"])) and "loss" in summary["val"]
    assert (tmp_path / task / "final" / "model.safetensors").is_file()


def test_streams_hold_at_most_max_shards(frame_shards):
    from avlearn.models import create_model
    from training.tasks import get_task

    train_dir, _ = frame_shards
    refs = sequence_refs(train_dir)
    for task in OPTIONS:
        t = get_task(task, OPTIONS[task])
        model = create_model(t.default_model, "test_tiny")
        ds = t.make_dataset(str(train_dir), model, split="train", seed=0)
        ds.set_epoch(1)
        seqs = Counter(int(x["seq"]) for x in ds)
        assert seqs == {r.uid: 2 for r in refs}, task
        assert ds.peak_shards == 1 and len(ds.shards_read) == 3, task  # 3 shards, one held at a time, each read once
        frame_bytes = 80 * 80 * 3 if task == "colorization" else 32 * 32 * 3  # decoded at the colorizer's short side / the trunk's size
        per_shard = Counter()
        for r in refs:
            per_shard[r.shard] += r.frames * frame_bytes
        assert 0 < ds.peak_bytes <= max(per_shard.values()) < sum(per_shard.values()), task  # one shard's frames, not the dataset's


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from training.loop import train
from training.tasks.base import register_task
from training.tasks.shuffle_learn import ShuffleLearnTask
from training.tasks.odd_one_out import OddOneOutTask
from training.tasks.colorization import ColorizationTask
import torch.distributed as dist

def recording(base):
    class Rec(base):
        name = "rec_" + base.name
        def compute(self, model, batch):
            if model.training:
                with open(f"{out}/seen-{{self.name}}-{{dist.get_rank()}}.txt", "a") as f:
                    f.write(" ".join(str(int(s)) for s in batch["seq"]) + "\\n")
            return super().compute(model, batch)
    return register_task(Rec)

out = {out!r}
base = {{b.name: b for b in (ShuffleLearnTask, OddOneOutTask, ColorizationTask)}}[sys.argv[1]]
task = recording(base)
train(task.name, {data!r}, f"{{out}}/{{task.name}}", preset="test_tiny", epochs=2, batch_size=2, lr=1e-3, seed=3, device="cpu",
      options={options!r}[base.name], val_every=1000, progress=False, workers=0)
"""


@pytest.mark.xdist_group("torchrun")  # one torchrun at a time under `pytest -n 2 --dist loadgroup`
@pytest.mark.slow
@pytest.mark.parametrize("task", list(OPTIONS))
def test_ddp_visits_each_sequence_once_per_epoch(frame_shards, tmp_path, task):
    """One torchrun launch per task: a process group is set up once per process (as in real use)."""
    train_dir, _ = frame_shards
    refs = sequence_refs(train_dir)
    script = tmp_path / "ddp_shards.py"
    script.write_text(SCRIPT.format(out=str(tmp_path), data=str(train_dir), options=OPTIONS))
    run_torchrun(script, task)
    lines = {r: (tmp_path / f"seen-rec_{task}-{r}.txt").read_text().splitlines() for r in range(2)}
    steps = len(refs) // 2  # per rank and epoch: 4 sequences x 2 samples / batch 2
    assert len(lines[0]) == len(lines[1]) == 2 * steps, task
    for epoch in range(2):
        part = {r: [int(s) for line in lines[r][epoch * steps : (epoch + 1) * steps] for s in line.split()] for r in range(2)}
        assert Counter(part[0] + part[1]) == {r.uid: 2 for r in refs}, (task, epoch)  # every sequence, 2 samples each
        assert not set(part[0]) & set(part[1]), (task, epoch)  # 8 sequences split evenly: each on one rank only


def test_raw_colorization_is_not_sharded_twice(motion_world):
    """A raw source: every rank holds every clip and the loop's sampler deals them out (an epoch covers all the data under DDP)."""
    from avlearn.models import create_model
    from training.tasks import get_task
    from training.tasks.colorization import ColorizationTask

    src = str(motion_world / "splits" / "val.csv")
    sizes = []
    for rank, world_size in ((0, 1), (1, 2)):
        task = get_task("colorization", {})
        assert isinstance(task, ColorizationTask)
        sizes.append(len(task.make_dataset(src, create_model("colorizer", "test_tiny"), split="train", seed=0, rank=rank, world_size=world_size)))
    assert sizes[0] == sizes[1] > 0


@pytest.mark.parametrize("task", ["odd_one_out", "colorization"])
def test_resume_mid_epoch_equals_an_uninterrupted_run(frame_shards, tmp_path, task):
    """Stopped inside epoch 1 and resumed: the same samples and losses as a run never stopped (CPU, workers=0)."""
    import json

    from training.loop import train

    train_dir, _ = frame_shards
    kw = {"preset": "test_tiny", "steps": 6, "batch_size": 4, "device": "cpu", "options": OPTIONS[task], "val_every": 100, "progress": False}
    train(task, str(train_dir), tmp_path / "once", **kw)
    train(task, str(train_dir), tmp_path / "twice", stop_at=5, ckpt_every=1, **kw)  # epoch 0 is 4 steps: stopped at batch 1 of epoch 1
    train(task, str(train_dir), tmp_path / "twice", resume=True, **kw)

    def losses(run: Path) -> list[float]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["split"] == "train"]

    assert len(losses(tmp_path / "once")) == 6 and losses(tmp_path / "twice") == pytest.approx(losses(tmp_path / "once"), rel=1e-6)
