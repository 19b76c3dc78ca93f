"""``avlearn audit shortcuts``: the two samplers, the split, the interval, the CLI end to end and its user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avlearn.cli import main as cli_main
from avlearn.media import read_audio
from avlearn.models import create_model
from avlearn.pretext.avc_datasets import decode_records
from training.audit import fold_clips, verdict, wilson
from training.audit_pairs import DECOY, AuditAVC

SIZE = (32, 32)


@pytest.fixture(scope="module")
def records(tiny_world):
    return decode_records(str(tiny_world / "splits" / "train.csv"), size_px=SIZE, sample_rate_hz=16000, segment_sec=1.0, hop_sec=0.25)


@pytest.fixture(scope="module")
def samplers(records):
    pre = create_model("ave_net", "test_tiny").preprocessing
    kw = dict(seed=0, augment=False, fixed=True, jitter=4)
    return AuditAVC(records, pre, sampler="matched", **kw), AuditAVC(records, pre, sampler="naive", **kw)


def test_both_labels_hear_other_videos_through_the_matched_rule(records, samplers):
    matched, naive = samplers
    pairs = matched.pairs.epoch_pairs(0)
    assert [p.label for p in pairs[:6]] == [1, 0, 1, 0, 1, 0] and sum(p.label for p in pairs) == len(pairs) // 2
    assert pairs == naive.pairs.epoch_pairs(0)  # the samplers differ only in the path of label-1 audio
    for p in pairs:
        assert records[p.audio_idx].clip_id != records[p.frame_idx].clip_id  # no content correspondence, either label
        assert matched.pairs.position[p.audio_idx] == matched.pairs.position[p.frame_idx]
        assert matched.pairs.cand[p.audio_idx] == matched.pairs.cand[p.frame_idx]
        assert p.kind == (DECOY if p.label == 1 else "negative")
    for i in range(16):
        p = matched.pairs.pair(i)
        assert torch.equal(matched[i]["audio"], matched.specs[p.audio_idx])  # matched: one table for both labels
        assert torch.equal(matched[i]["image"], naive[i]["image"])
        if p.label == 0:
            assert torch.equal(naive[i]["audio"], naive.specs[p.audio_idx])  # naive negatives: the normal path
        else:
            assert torch.equal(naive[i]["audio"], naive.naive_specs[p.audio_idx])
            assert not torch.equal(naive.naive_specs[p.audio_idx], naive.specs[p.audio_idx])


def test_naive_windows_are_the_same_clip_off_the_frame_grid(records, samplers):
    """The naive label-1 window of record k is record k's own clip, shifted by less than one candidate hop."""
    from scipy.signal import correlate

    from training.audit_pairs import naive_windows

    waves = naive_windows(records, per_slot=4, sample_rate_hz=16000, segment_sec=1.0, seed=0)
    lags = []
    for k in range(0, len(records), 7):
        r = records[k]
        ref = read_audio(r.path, r.start_sec, 1.3, 16000)  # the normal decoder, from the frame's time on
        x = waves[k][:12000]
        if np.std(x) < 1e-3:
            continue
        # normalised cross-correlation at every lag of 0..0.25 s
        scores = correlate(ref, x, mode="valid")[:4001] / np.sqrt(np.convolve(ref**2, np.ones(x.size), mode="valid")[:4001] * np.sum(x**2))
        lags.append(int(np.argmax(scores)))
        assert scores.max() > 0.85
    lags = np.array(lags)
    assert len(lags) >= 10 and np.all(lags <= 4000) and np.mean(lags > 16) > 0.8  # off the grid, within 0.25 s


@pytest.fixture(scope="module")
def tone_folder(tmp_path_factory):
    """Six 2 s tone videos with audio and one without."""
    from avlearn.testing import make_tone_video

    folder = tmp_path_factory.mktemp("tones")
    for i in range(6):
        make_tone_video(folder / f"t{i}.mp4", seconds=2.0, freq_hz=300.0 + 100 * i)
    make_tone_video(folder / "silent.mp4", seconds=2.0, audio=False)
    return folder


def _ids(path) -> set[str]:
    return {json.loads(x)["clip_id"] for x in path.read_text().splitlines()}


def test_folds_hold_out_each_clip_once_and_skip_files_without_audio(tmp_path, tone_folder, tiny_world):
    folds = fold_clips(str(tone_folder), tmp_path / "f", folds=3, seed=0)
    assert len(folds) == 3
    held = [_ids(f.heldout) for f in folds]
    assert sorted(c for h in held for c in h) == [f"t{i}.mp4" for i in range(6)]  # each clip held out exactly once
    for f, h in zip(folds, held):
        train = _ids(f.train)
        assert not train & h and train | h == {f"t{i}.mp4" for i in range(6)} and set(f.heldout_ids) == h
    assert len(fold_clips(str(tone_folder), tmp_path / "g", folds=9, seed=0)) == 3  # at most two held-out clips per fold
    one = fold_clips(str(tone_folder), tmp_path / "h", folds=1, seed=0)
    assert len(one) == 1 and len(one[0].heldout_ids) == 3
    # a world: one fold, train on splits/train.csv, hold out every other split's videos
    (w,) = fold_clips(str(tiny_world), tmp_path / "w", folds=3, seed=0)
    assert not set(w.train_ids) & set(w.heldout_ids) and len(w.train_ids) + len(w.heldout_ids) == 16


def test_wilson_interval_and_verdict():
    w = wilson(50, 100)
    assert w["accuracy"] == 0.5 and w["ci95"] == pytest.approx([0.40383, 0.59617], abs=1e-4)  # (p + z²/2n ± z√(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    assert wilson(0, 10)["ci95"][0] == pytest.approx(0.0, abs=1e-12)
    assert verdict([0.48, 0.52]) == "no shortcut found"
    assert verdict([0.60, 0.70]) == "shortcut found" and verdict([0.30, 0.40]) == "shortcut found"
    assert verdict([0.50, 0.58]) == "inconclusive"


def test_cli_end_to_end(tiny_world, tmp_path, capsys):
    out = tmp_path / "audit.json"
    argv = ["audit", "shortcuts", "--data", str(tiny_world), "--preset", "test_tiny", "--steps", "3", "--batch-size", "8"]
    code = cli_main([*argv, "--sampler", "naive", "--heldout-pairs", "50", "--seed", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    rep = json.loads(out.read_text())
    t = rep["trained"]
    assert rep["sampler"] == "naive" and rep["steps_per_model"] == 3 and t["pairs"] >= 50 and t["pairs"] == rep["random_weights"]["pairs"]
    assert t["ci95"][0] <= t["accuracy"] <= t["ci95"][1] and t["accuracy"] == t["correct"] / t["pairs"]
    assert rep["verdict"] in ("shortcut found", "no shortcut found", "inconclusive") and rep["verdict"] == verdict(t["ci95"])
    assert line.startswith(f"avlearn audit shortcuts: {rep['verdict']}: held-out accuracy {t['accuracy']:.3f}")
    (fold,) = rep["folds"]
    assert fold["train_clips"] + rep["heldout_clips"] == 16 and rep["jitter"] == 4 and fold["trained"]["correct"] == t["correct"]
    assert 0.0 <= fold["train_accuracy_last_100_steps"] <= 1.0


def test_cli_cross_fits_a_folder(tone_folder, tmp_path, capsys):
    out = tmp_path / "audit.json"
    argv = ["audit", "shortcuts", "--data", str(tone_folder), "--preset", "test_tiny", "--steps", "2", "--batch-size", "4", "--heldout-pairs", "30"]
    assert cli_main([*argv, "--folds", "3", "--no-progress", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert len(rep["folds"]) == 3 and rep["heldout_clips"] == 6
    assert rep["trained"]["correct"] == sum(f["trained"]["correct"] for f in rep["folds"])
    assert rep["trained"]["pairs"] == sum(f["trained"]["pairs"] for f in rep["folds"]) >= 30
    assert "(3 fold(s))" in capsys.readouterr().out


def test_naive_sampler_exists_only_in_the_audit():
    from training.tasks import get_task

    with pytest.raises(ValueError, match="sampler"):
        get_task("avc", {"sampler": "naive"})


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--budget-sec", "-1"], "--budget-sec must be > 0"),
        (["--folds", "0"], "--folds must be >= 1"),
        (["--set", "bogus=1"], "bogus"),
        (["--preset", "huge"], "unknown preset"),
    ],
)
def test_cli_user_mistakes(tiny_world, capsys, extra, needle):
    assert cli_main(["audit", "shortcuts", "--data", str(tiny_world), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("avlearn audit shortcuts: error:") and needle in err[0]


def test_cli_data_mistakes(tmp_path, tiny_world, capsys):
    from avlearn.data.prepare import prepare

    assert cli_main(["audit", "shortcuts", "--data", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
    shards = tmp_path / "shards"
    prepare(str(tiny_world / "splits" / "val.csv"), shards, workers=1, frame_size_px=64, progress=False)
    capsys.readouterr()
    assert cli_main(["audit", "shortcuts", "--data", str(shards), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "raw source" in err[0]
