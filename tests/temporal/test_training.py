"""Training plumbing of both temporal tasks: a few steps through training.loop.train, checkpoint, eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.checkpoint import load_checkpoint

TINY = {"tau_max": "20", "tau_min": "5", "samples_per_epoch": "16", "val_samples": "8"}


@pytest.mark.parametrize(
    "task, options, shape",
    [
        ("shuffle_learn", TINY, (3, 3, 32, 32)),
        ("odd_one_out", {"gap": "3", "samples_per_epoch": "8", "val_samples": "4"}, (6, 3, 3, 32, 32)),
    ],
)
def test_train_checkpoint_and_eval(motion_world, tmp_path, task, options, shape) -> None:
    from avlearn.eval.registry import get_eval
    from training.loop import train
    from training.tasks import get_task

    out = tmp_path / task
    summary = train(task, str(motion_world), out, preset="test_tiny", steps=3, batch_size=4, lr=1e-3, device="cpu", options=options, progress=False)
    assert summary["step"] == 3 and (out / "final" / "model.safetensors").is_file() and (out / "best" / "config.json").is_file()
    assert "acc" in summary["val"] and 0.0 <= summary["val"]["acc"] <= 1.0
    model, config = load_checkpoint(out / "final")
    assert config["model"]["name"] == task and config["run"]["options"] == options
    ds = get_task(task, options).make_dataset(str(motion_world), model, split="val", seed=0)
    item = ds[0]
    assert tuple(item["frames"].shape) == shape and item["label"].dtype == torch.long
    with torch.no_grad():
        emb = model.embed_image(item["frames"].reshape(-1, 3, 32, 32)[:2])
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-5)

    kwargs = {"gap": 3} if task == "odd_one_out" else {"tau_max": 20, "tau_min": 5}
    metrics = get_eval(task)(
        checkpoint=str(out / "final"), data=str(motion_world), samples=8, probe_moments=3, probe_random_inits=2, supervised_epochs=1, device="cpu", **kwargs
    )
    assert metrics["split"] == "test" and metrics["pretext"]["samples"] == 8
    assert metrics["chance"] == (0.5 if task == "shuffle_learn" else 1 / 6)
    probe = metrics["probe"]
    world = json.loads((motion_world / "world.json").read_text())
    assert probe["split"] == "world" and probe["classes"] == 9  # the kinds of motion, from the train split's labels
    assert probe["train_clips"] == world["counts"]["train"] and probe["test_clips"] + probe["test_clips_of_unseen_classes"] == world["counts"]["test"]
    assert probe["input"] == ("frame" if task == "shuffle_learn" else "stack of 3 frames 3 grid frames apart")  # what the trunk was trained on
    assert set(probe["layers"]) == {"embedding", "conv"} and probe["bar_layer"] == "embedding"
    emb_row = probe["layers"]["embedding"]
    assert probe["delta_linear"] == pytest.approx(emb_row["trained"]["linear"] - emb_row["random"]["linear"])
    rand = emb_row["random"]  # the mean of two random inits, each kept
    assert rand["inits"] == 2 and len(rand["knn_per_init"]) == 2 and rand["linear"] == pytest.approx(np.mean(rand["linear_per_init"]))
    sup = probe["supervised"]
    assert sup["epochs"] == 1 and 0.0 <= sup["test_accuracy"] <= 1.0 and np.isfinite(sup["final_loss"])
    json.dumps(metrics)
    if task == "odd_one_out":  # the stacked-frames trunk shown single frames as stills
        stills = get_eval(task)(
            checkpoint=str(out / "final"), data=str(motion_world), samples=4, probe_moments=2, probe_random_inits=1, supervised_epochs=0, device="cpu",
            probe_input="frame",
        )  # fmt: skip
        assert stills["probe"]["input"] == "frame shown as a still" and "supervised" not in stills["probe"]


def test_probe_on_a_ucf101_layout(motion_world, tmp_path) -> None:
    """`--ucf101 ROOT --split-number 1`: the motion world's videos laid out as UCF101 (class folders + official lists)."""
    import csv
    import shutil

    from avlearn.cli import main
    from training.loop import train

    root, lists = tmp_path / "UCF-101", tmp_path / "UCF-101" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    classes = sorted({r["label"] for r in csv.DictReader(open(motion_world / "labels.csv"))})
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    for side, name in (("train", "trainlist01.txt"), ("test", "testlist01.txt")):
        lines = []
        for r in csv.DictReader(open(motion_world / "splits" / f"{side}.csv")):
            rel = f"{r['label']}/v_{r['label']}_{Path(r['path']).stem}.avi"
            (root / r["label"]).mkdir(exist_ok=True)
            shutil.copy(motion_world / "splits" / r["path"], root / rel)
            lines.append(f"{rel} {classes.index(r['label']) + 1}\n" if side == "train" else f"{rel}\n")
        (lists / name).write_text("".join(lines))
    train("shuffle_learn", str(motion_world), tmp_path / "sl", preset="test_tiny", steps=1, batch_size=2, device="cpu", options=TINY, progress=False)
    out = tmp_path / "ucf.json"
    argv = ["eval", "shuffle_learn", "--checkpoint", str(tmp_path / "sl" / "final"), "--data", str(motion_world), "--samples", "4", "--tau-max", "20",
            "--tau-min", "5", "--ucf101", str(root), "--split-number", "1", "--probe-moments", "2", "--probe-random-inits", "1", "--supervised-epochs", "0",
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    probe = json.loads(out.read_text())["probe"]
    assert probe["split"] == "ucf101 split 1" and probe["classes"] == 9 and probe["missing"] == 0
    assert probe["train_clips"] == len((lists / "trainlist01.txt").read_text().splitlines())
    assert main(argv[:-2] + ["--split-number", "2"]) == 2  # no trainlist02.txt: one line, exit 2


def test_eval_cli_writes_json(tiny_world, tmp_path) -> None:
    from avlearn.eval.cli import _eval
    from training.loop import train

    train("shuffle_learn", str(tiny_world), tmp_path / "run", preset="test_tiny", steps=1, batch_size=2, device="cpu", options=TINY, progress=False)
    import argparse

    out = tmp_path / "eval.json"
    rc = _eval(
        argparse.Namespace(
            name="shuffle_learn",
            rest=[
                "--checkpoint",
                str(tmp_path / "run" / "final"),
                "--data",
                str(tiny_world),
                "--samples",
                "4",
                "--no-probe",
                "--tau-max",
                "20",
                "--tau-min",
                "5",
                "--device",
                "cpu",
                "--out",
                str(out),
            ],
        )
    )
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert "probe" not in metrics and metrics["pretext"]["samples"] == 4


def test_unknown_option_and_wrong_checkpoint_are_clear_errors(tiny_world, tmp_path) -> None:
    from avlearn.eval.registry import get_eval
    from training.loop import train
    from training.tasks import get_task

    with pytest.raises(ValueError, match="unknown shuffle_learn option"):
        get_task("shuffle_learn", {"tau": "3"})
    train(
        "odd_one_out",
        str(tiny_world),
        tmp_path / "o3",
        preset="test_tiny",
        steps=1,
        batch_size=2,
        device="cpu",
        options={"gap": "3", "samples_per_epoch": "4", "val_samples": "2"},
        progress=False,
    )
    with pytest.raises(ValueError, match="not 'shuffle_learn'"):
        get_eval("shuffle_learn")(checkpoint=str(tmp_path / "o3" / "final"), data=str(tiny_world), samples=2, no_probe=True, device="cpu")


@pytest.mark.parametrize("encoder", ["dynamic", "frames", "stacked", "differences"])
def test_every_encoder_trains(tiny_world, tmp_path, encoder) -> None:
    from training.loop import train

    train(
        "odd_one_out",
        str(tiny_world),
        tmp_path / encoder,
        preset="test_tiny",
        steps=2,
        batch_size=2,
        device="cpu",
        options={"gap": "3", "encoder": encoder, "samples_per_epoch": "4", "val_samples": "2"},
        progress=False,
    )
    model, config = load_checkpoint(tmp_path / encoder / "final")
    assert config["model"]["encoder"] == encoder and model.encoder == encoder


@pytest.mark.parametrize(("layout", "positives"), [("balanced", 1 / 2), ("all", 1 / 3)])
def test_shuffle_learn_training_layout_sets_the_class_balance(index_videos, layout, positives) -> None:
    """train_tuples=balanced: each draw gives its positive and one negative; all: its three tuples (one positive in three)."""
    from training.tasks import get_task

    task = get_task("shuffle_learn", {"train_tuples": layout, "tau_min": "3", "tau_max": "10", "samples_per_epoch": "60", "augment": "false"})
    model = task.build_model("test_tiny")
    ds = task.make_dataset(str(index_videos), model, split="train", seed=0)
    labels = [int(ds[i]["label"]) for i in range(len(ds))]
    per_draw = 2 if layout == "balanced" else 3
    assert len(ds) % per_draw == 0 and sum(labels) / len(labels) == pytest.approx(positives)
    assert all(labels[j] == 1 and not any(labels[j + 1 : j + per_draw]) for j in range(0, len(labels), per_draw))  # a draw's positive first
