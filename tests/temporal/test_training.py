"""Training plumbing of both temporal tasks: a few steps through training.loop.train, checkpoint, eval."""

from __future__ import annotations

import json

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
def test_train_checkpoint_and_eval(tiny_world, tmp_path, task, options, shape) -> None:
    from avlearn.eval.registry import get_eval
    from training.loop import train
    from training.tasks import get_task

    out = tmp_path / task
    summary = train(task, str(tiny_world), out, preset="test_tiny", steps=3, batch_size=4, lr=1e-3, device="cpu", options=options, progress=False)
    assert summary["step"] == 3 and (out / "final" / "model.safetensors").is_file() and (out / "best" / "config.json").is_file()
    assert "acc" in summary["val"] and 0.0 <= summary["val"]["acc"] <= 1.0
    model, config = load_checkpoint(out / "final")
    assert config["model"]["name"] == task and config["run"]["options"] == options
    ds = get_task(task, options).make_dataset(str(tiny_world), model, split="val", seed=0)
    item = ds[0]
    assert tuple(item["frames"].shape) == shape and item["label"].dtype == torch.long
    with torch.no_grad():
        emb = model.embed_image(item["frames"].reshape(-1, 3, 32, 32)[:2])
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-5)

    kwargs = {"gap": 3} if task == "odd_one_out" else {"tau_max": 20, "tau_min": 5}
    metrics = get_eval(task)(
        checkpoint=str(out / "final"), data=str(tiny_world), samples=8, probe_frames=2, folds=2, device="cpu", probe_blocks=True,
        probe_random_inits=2, **kwargs,
    )  # fmt: skip
    assert metrics["split"] == "test" and metrics["pretext"]["samples"] == 8
    assert metrics["chance"] == (0.5 if task == "shuffle_learn" else 1 / 6)
    probe = metrics["probe"]
    assert probe["trained"]["frames"] == 16 and probe["random"]["classes"] == 2  # 8 clips x 2 frames, 2 categories
    assert probe["delta_nn"] == pytest.approx(probe["trained"]["nn_accuracy"] - probe["random"]["nn_accuracy"])
    rand = probe["random"]  # the mean of two random inits, each kept
    assert rand["inits"] == 2 and len(rand["nn_per_init"]) == 2 and rand["linear_accuracy"] == pytest.approx(np.mean(rand["linear_per_init"]))
    assert set(probe["layers"]) == {"embedding", "conv"} and probe["layers"]["embedding"]["delta_linear"] == probe["delta_linear"]
    conv = probe["layers"]["conv"]
    assert conv["trained"]["frames"] == 16 and conv["delta_linear"] == pytest.approx(conv["trained"]["linear_accuracy"] - conv["random"]["linear_accuracy"])
    # diagnostics: both test_tiny blocks, two poolings; the last block average-pooled is the declared conv layer
    assert set(probe["blocks"]) == {"block1_avg", "block1_max", "block2_avg", "block2_max"}
    assert probe["blocks"]["block2_avg"]["trained"] == conv["trained"] and probe["blocks"]["block2_avg"]["random"] == conv["random"]
    assert probe["input"] == "frame"  # what the Embedder serves
    json.dumps(metrics)
    if task == "odd_one_out":  # the stacked-frames trunk on what it was trained on; gap as trained (3) when not given
        stacked = get_eval(task)(
            checkpoint=str(out / "final"), data=str(tiny_world), samples=4, probe_frames=2, folds=2, device="cpu", probe_random_inits=1, probe_stacks=True,
        )  # fmt: skip
        assert stacked["probe"]["input"] == "stack of 3 frames 3 grid frames apart" and stacked["probe"]["trained"]["frames"] == 16


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


@pytest.mark.parametrize("encoder", ["dynamic", "frames", "stacked"])
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
