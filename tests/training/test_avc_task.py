"""Task "avc": samples, both losses, a short real run, and `avlearn eval avc` on its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from avlearn.cli import main as cli_main
from training.loop import train
from training.tasks import get_task


def test_samples_and_losses(tiny_world):
    torch.set_num_threads(1)
    task = get_task("avc", {})
    model = task.build_model("test_tiny")
    ds = task.make_dataset(str(tiny_world), model, split="train", seed=0)
    assert len(ds) == 2 * ds.pairs.n and ds.frames.shape[1:3] == tuple(model.preprocessing["image_size_px"])
    assert len(ds.frames) > ds.pairs.n  # jitter=auto: several start candidates per slot
    items = [ds[i] for i in range(8)]
    assert [int(it["label"]) for it in items] == [1, 0] * 4
    assert items[0]["image"].shape == (3, 32, 32) and items[0]["audio"].shape[0] == 1
    assert torch.equal(items[0]["audio"], ds.specs[ds.pairs.pair(0).frame_idx])  # a positive hears its own segment
    assert torch.equal(ds[3]["image"], ds[3]["image"])  # deterministic per (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(items[3]["image"], ds[3]["image"])  # new crop and new negative per epoch
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    out = task.compute(model, batch)
    assert out["loss"].requires_grad and 0.0 <= float(out["acc"]) <= 1.0
    avol = get_task("avc", {"model": "avol_net"})
    out = avol.compute(avol.build_model("test_tiny"), batch)
    assert out["loss"].requires_grad and out["loss"].ndim == 0
    val = task.make_dataset(str(tiny_world), model, split="val", seed=0)
    assert torch.equal(val[1]["image"], val[1]["image"]) and not val.augment


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown avc option"):
        get_task("avc", {"lr": "1"})
    with pytest.raises(ValueError):
        get_task("avc", {"model": "colorizer"})
    assert get_task("avc", {"hard_negatives": "true"}).opts.hard_negative_fraction == 0.5


@pytest.mark.parametrize("model", ["ave_net", "avol_net"])
def test_train_then_eval(tiny_world, tmp_path, model):
    torch.set_num_threads(1)
    summary = train(
        "avc",
        str(tiny_world),
        tmp_path / "run",
        preset="test_tiny",
        steps=4,
        batch_size=8,
        lr=1e-3,
        device="cpu",
        seed=0,
        options={"model": model, "hard_negatives": "0.25"},
        val_every=2,
        progress=False,
    )
    assert summary["step"] == 4 and summary["val"]["acc"] >= 0.0
    cfg = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert cfg["model"]["name"] == model and cfg["run"]["options"]["model"] == model
    out = tmp_path / "eval.json"
    code = cli_main(
        ["eval", "avc", "--checkpoint", str(tmp_path / "run" / "best"), "--data", str(tiny_world), "--random-weights", "--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    res = json.loads(out.read_text())
    for side in ("trained", "random_weights"):
        r = res[side]
        assert r["avc"]["pairs"] == 2 * res["segments"]
        assert r["avc"]["accuracy_all"] == pytest.approx((r["avc"]["positive_accuracy"] + r["avc"]["negative_accuracy_all"]) / 2)
        assert set(r["retrieval"]) == {"image->audio", "audio->image", "image->image", "audio->audio"}
        if model == "avol_net":
            loc = r["localization"]
            assert loc["samples"] > 0 and 0.0 <= loc["pointing_accuracy"] <= 1.0
            assert loc["cIoU@0.5"] <= loc["ceiling_cIoU@0.5"] + 1e-9 and loc["AUC"] <= loc["ceiling_AUC"] + 1e-9
        else:
            assert "skipped" in r["localization"]
    assert res["boxes"].endswith("boxes.json") and res["data"].endswith("test.csv")


def test_eval_cli_errors(tmp_path, capsys):
    assert cli_main(["eval", "nonexistent"]) == 2
    assert cli_main(["train", "avc", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--steps", "1", "--set", "bogus"]) == 2


def test_streaming_from_shards(tiny_world, tmp_path):
    """A prepared shard dir streams: pairs through the shuffle buffer, balanced, negatives from other videos."""
    from avlearn.data.prepare import prepare

    torch.set_num_threads(1)
    shards = tmp_path / "shards"
    prepare(str(tiny_world / "splits" / "train.csv"), shards, workers=1, frame_size_px=64, clips_per_shard=4, progress=False)
    task = get_task("avc", {"buffer": "16"})
    model = task.build_model("test_tiny")
    ds = task.make_dataset(str(shards), model, split="train", seed=0)
    assert isinstance(ds, torch.utils.data.IterableDataset)
    items = list(ds)
    labels = [int(it["label"]) for it in items]
    assert len(items) >= 20 and abs(sum(labels) - len(labels) / 2) <= 1
    assert items[0]["image"].shape == (3, 32, 32)
    summary = train("avc", str(shards), tmp_path / "run", preset="test_tiny", steps=3, batch_size=4, device="cpu", options={"buffer": "16"}, progress=False)
    assert summary["step"] == 3 and summary["best"] is None  # a shard dir has no val split: trained without validation
