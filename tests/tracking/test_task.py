"""The colorization Task: dataset from raw video, colour clusters fitted, finite loss with gradients."""

import numpy as np
import torch

from avlearn.media.writer import write_video


def make_moving_video(path, n=30, size=(72, 96), seed=0):
    rng = np.random.default_rng(seed)
    h, w = size
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        f = bg.copy()
        f[10:30, 5 + 2 * i : 25 + 2 * i] = (250, 200, 20)
        frames.append(f)
    write_video(path, iter(frames), 25)
    return path


def test_task_compute_finite_loss_with_gradients(tmp_path):
    from training.tasks import get_task

    vids = tmp_path / "vids"
    vids.mkdir()
    make_moving_video(vids / "a.mp4", seed=0)
    make_moving_video(vids / "b.mp4", seed=1)
    task = get_task("colorization", {"frame_step_sec": "0.08", "val_fraction": "0.2"})
    torch.manual_seed(0)
    model = task.build_model("test_tiny")
    ds = task.make_dataset(str(vids), model, split="train", seed=0)
    assert model.is_fitted and model.preprocessing["ab_centers"] is not None
    assert len(ds) > 0
    item = ds[0]["frames"]
    assert item.shape == (4, 64, 64, 3) and item.dtype == torch.uint8
    val = task.make_dataset(str(vids), model, split="val", seed=0)
    assert len(val) > 0
    batch = {"frames": torch.stack([ds[i]["frames"] for i in range(min(4, len(ds)))])}
    out = task.compute(model, batch)
    assert torch.isfinite(out["loss"]) and 0 <= out["acc"] <= 1
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_model_forward_shapes():
    from avlearn.models import create_model

    model = create_model("colorizer", "test_tiny")
    model.set_color_centers(torch.randn(16, 2) * 20)
    out = model(torch.randint(0, 255, (2, 4, 64, 64, 3), dtype=torch.uint8))
    assert out["log_probs"].shape == (2, 16, 16, 16)
    assert out["target"].shape == (2, 16, 16)
    assert torch.allclose(out["log_probs"].exp().sum(1), torch.ones(2, 16, 16), atol=1e-4)


def test_train_through_shared_loop_and_restore(tmp_path):
    from avlearn.checkpoint import load_checkpoint
    from training.loop import train

    vids = tmp_path / "vids"
    vids.mkdir()
    make_moving_video(vids / "a.mp4", seed=0)
    summary = train(
        "colorization",
        str(vids),
        tmp_path / "run",
        preset="test_tiny",
        steps=2,
        batch_size=2,
        workers=0,
        device="cpu",
        options={"frame_step_sec": "0.08", "val_fraction": "0.2"},
        progress=False,
    )
    model, config = load_checkpoint(summary["final"])
    assert model.is_fitted
    assert len(config["preprocessing"]["ab_centers"]) == 16
