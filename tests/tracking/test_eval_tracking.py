"""`avlearn eval tracking`: held-out sequences only (refused when trained on, even from a copy), all four rows, the official frame rule."""

import shutil

import numpy as np
import pytest
from PIL import Image

from avlearn.data.davis import write_mask
from tracking.test_task import make_moving_video
from tracking.test_track import moving_square_video

STEPS = {"frame_step_sec": "0.04", "val_fraction": "0.2"}


def _davis_root(root, names, n=12):
    """A DAVIS-layout root with one moving-square sequence per name (JPEG frames, palette masks)."""
    for k, name in enumerate(names):
        frames, masks = moving_square_video(n=n, seed=k)
        for i, (f, m) in enumerate(zip(frames, masks)):
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(f).save(root / "JPEGImages" / "480p" / name / f"{i:05d}.jpg")
            write_mask(root / "Annotations" / "480p" / name / f"{i:05d}.png", m)
    return root


def _train(data, out):
    from training.loop import train

    train("colorization", str(data), out, preset="test_tiny", steps=2, batch_size=2, device="cpu", options=STEPS, progress=False)
    return out / "final"


def test_a_sequence_the_checkpoint_trained_on_is_refused(tmp_path):
    from avlearn.eval.tracking import evaluate_tracking

    davis = _davis_root(tmp_path / "davis", ["seen", "other"])
    ckpt = _train(davis, tmp_path / "run")  # trained on the DAVIS root's frames (the leak the docs used to recommend)
    with pytest.raises(ValueError, match="was trained on 2 of the evaluated sequences"):
        evaluate_tracking(str(davis), checkpoint=str(ckpt), progress=False)
    copy = tmp_path / "copy"  # the same frames elsewhere: found by content
    shutil.copytree(davis, copy)
    with pytest.raises(ValueError, match="trained on 1 of the evaluated sequences"):
        evaluate_tracking(str(copy), checkpoint=str(ckpt), sequences=["other"], progress=False)


def test_held_out_evaluation_reports_model_random_lab_and_copy(tmp_path):
    from avlearn.cli import main
    from avlearn.eval.tracking import evaluate_tracking

    videos = tmp_path / "videos"
    videos.mkdir()
    make_moving_video(videos / "a.mp4", seed=0)
    make_moving_video(videos / "b.mp4", seed=1)
    ckpt = _train(videos, tmp_path / "run")
    davis = _davis_root(tmp_path / "davis", ["held1", "held2"], n=5)
    m = evaluate_tracking(str(davis), checkpoint=str(ckpt), radius=4, progress=False)
    assert set(m["methods"]) == {"model", "random", "lab", "copy"}
    assert m["held_out"]["checked"] and "none of the 2 evaluated sequences" in m["held_out"]["statement"]
    assert m["held_out"]["training_data"] == [str(videos)]
    for r in m["methods"].values():
        assert set(r["sequences"]) == {"held1", "held2"} and r["J&F"] == pytest.approx((r["J"] + r["F"]) / 2)
    assert m["methods"]["lab"]["J"] > m["methods"]["copy"]["J"]  # the square moves 3 px a frame: copying loses it
    assert "1 .. N-2" in m["frames_scored"]
    # the CLI: a leak is one line and exit code 2
    leak = _train(davis, tmp_path / "leak")
    code = main(["eval", "tracking", "--checkpoint", str(leak), "--davis-root", str(davis)])
    assert code == 2


def test_copy_first_mask_on_a_static_sequence_scores_every_scored_frame_perfectly(tmp_path):
    from avlearn.eval.tracking import evaluate_tracking

    root = tmp_path / "static"
    frame = np.full((40, 60, 3), 90, np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 10:30] = 1
    for i in range(4):
        (root / "JPEGImages" / "480p" / "s").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(root / "JPEGImages" / "480p" / "s" / f"{i:05d}.jpg")
        write_mask(root / "Annotations" / "480p" / "s" / f"{i:05d}.png", mask if i < 3 else np.zeros_like(mask))  # the last frame is not scored
    m = evaluate_tracking(str(root), progress=False)
    assert m["methods"]["copy"]["J&F"] == 1.0 and m["held_out"]["checked"] is False
