"""The instance world: splits by instance (and by category), real variation within a family, learnable families, sizes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from avlearn.data._synth_assets import make_instances
from avlearn.data._synth_looks import look_sprite
from avlearn.data._synth_scene import make_soundtrack
from avlearn.data._synth_sounds import sound_pitch
from avlearn.data.segments import SegmentRecord
from avlearn.data.sources import load_source
from avlearn.data.synth import make_world, world_categories
from avlearn.eval.avc import apply_labels_csv

SPLIT_NAMES = ("train", "val", "test", "test_seen", "test_unseen_categories")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """40 short videos, 4 sounding categories of 8 instances (2 held out each), 1 held-out category, ambiguous distractors."""
    out = tmp_path_factory.mktemp("instances")
    make_world(
        out, videos=40, seed=2, categories=4, instances=8, heldout_instances=0.25, heldout_categories=1, ambiguous=True,
        seconds=1.0, size_px=32, davis=0, use_shared=False, workers=1, progress=False,
    )  # fmt: skip
    return out


def test_splits_are_disjoint_by_video_and_by_instance(world):
    meta = json.loads((world / "world.json").read_text())
    labels = _rows(world / "labels.csv")
    assert list(labels[0]) == ["path", "label", "visible", "instance"]
    splits = {name: _rows(world / "splits" / f"{name}.csv") for name in SPLIT_NAMES}
    paths = {name: {r["path"] for r in rows} for name, rows in splits.items()}
    assert all(paths.values())
    for i, a in enumerate(SPLIT_NAMES):
        for b in SPLIT_NAMES[i + 1 :]:
            assert not paths[a] & paths[b], (a, b)
    assert sorted(p.removeprefix("../") for ps in paths.values() for p in ps) == sorted(r["path"] for r in labels)

    held = set(meta["heldout_instances"])
    assert len(held) == 3 * 2  # 25 % of 8 instances of each of the 3 trained categories (the 4th is held out whole)
    inst = {name: {r["instance"] for r in rows} for name, rows in splits.items()}
    assert inst["test"] <= held  # the headline split: unseen instances only
    for name in ("train", "val", "test_seen"):
        assert not inst[name] & held, name
    assert inst["test_seen"] <= inst["train"]  # seen instances, new videos
    # instance ids agree with labels and with world.json
    for r in labels:
        assert r["instance"].split("/")[0] == r["label"]
    ids = {i["id"] for c in meta["categories"] for i in c["instances"]}
    assert {r["instance"] for r in labels} <= ids
    assert [v["instance"] for v in meta["videos"]] == [r["instance"] for r in labels]


def test_heldout_instances_and_categories_never_appear_in_training(world):
    """Not as the sounding object, nor as a distractor (ambiguous: distractors are sounding categories)."""
    meta = json.loads((world / "world.json").read_text())
    held = set(meta["heldout_instances"])
    (unseen_category,) = meta["heldout_categories"]
    for v in meta["videos"]:
        shown = {o["instance"] for o in v["objects"]}
        cats = {o["category"] for o in v["objects"]}
        if v["split"] == "test_unseen_categories":
            assert v["label"] == unseen_category
        else:
            assert unseen_category not in cats, v["path"]
        if v["split"] in ("train", "val", "test_seen"):
            assert not shown & held, v["path"]
    unseen = _rows(world / "splits" / "test_unseen_categories.csv")
    assert {r["label"] for r in unseen} == {unseen_category}
    assert len(unseen) == 10  # its share: 40 videos / 4 categories


def test_extra_csv_column_keeps_readers_working(world):
    source = load_source(world / "splits" / "test.csv")
    rows = _rows(world / "splits" / "test.csv")
    assert len(source.spans) == len(rows)
    assert [s.labels for s in source.spans] == [(r["label"],) for r in rows]
    folder = load_source(world / "videos")
    assert all(s.labels for s in folder.spans)
    records = [SegmentRecord(s.clip_id, s.path, 0, 0.0, np.zeros((1, 1, 3), np.uint8), None, 16000) for s in folder.spans]
    assert apply_labels_csv(records, world / "labels.csv") == 40
    assert [r.labels for r in records] == [s.labels for s in folder.spans]


def _on_grey(sprite: np.ndarray) -> np.ndarray:
    alpha = sprite[..., 3:].astype(np.float32) / 255
    return sprite[..., :3] * alpha + 128.0 * (1 - alpha)


def test_instances_differ_in_look_and_sound_and_one_instance_is_one_template():
    sounding, silent = world_categories(categories=12, use_shared=False)
    for c in sounding + silent:
        make_instances(c, 24, seed=0)
        sprites = [_on_grey(look_sprite(i.look, 32)) for i in c.instances[:8]]
        diffs = [np.abs(a - b).mean() for k, a in enumerate(sprites) for b in sprites[k + 1 :]]
        assert min(diffs) > 5.0 and np.median(diffs) > 15.0, c.name  # 0..255 scale, per pixel and channel
        if c.sounding:
            pitches = [sound_pitch(i.sound) for i in c.instances]
            assert max(pitches) / min(pitches) >= 2.0, c.name  # at least an octave
            rates = [i.sound["rate_hz"] for i in c.instances]
            assert max(rates) / min(rates) >= 1.5, c.name  # rhythm / modulation rate
    for c in sounding:
        make_instances(c, 1, seed=0)
        again = world_categories(categories=12, use_shared=False)[0][sounding.index(c)]
        make_instances(again, 1, seed=5)
        assert c.instances[0] == again.instances[0]  # the template does not depend on the seed


def _features(wave: np.ndarray, sample_rate_hz: int = 16000, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    """Per band of a 40-band dB spectrogram: mean (level removed), std over time, upward minus downward
    drift of energy (diagonal correlations) and mean absolute change: (156,)."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, F)
    edges = np.geomspace(40, sample_rate_hz / 2, 41)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate_hz)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])])
    db = 10 * np.log10(bands + 1e-10)
    z = (db - db.mean()) / (db.std() + 1e-9)
    drift = (z[1:, 1:] * z[:-1, :-1]).mean(axis=1) - (z[:-1, 1:] * z[1:, :-1]).mean(axis=1)
    mean = db.mean(axis=1)
    return np.concatenate([mean - mean.mean(), db.std(axis=1), drift, np.abs(np.diff(db, axis=1)).mean(axis=1)])


def _unseen_instance_accuracy(categories, per_side: int = 4) -> float:
    """Nearest-centroid family accuracy on instances the centroids never saw (first ``per_side`` fit, next test)."""
    feats = np.stack(
        [
            [
                _features(make_soundtrack(c, i, np.random.default_rng(k), seconds=1.0, sample_rate_hz=16000)[0])
                for k, i in enumerate(c.instances[: 2 * per_side])
            ]
            for c in categories
        ]
    )
    feats = (feats - feats.mean(axis=(0, 1))) / (feats.std(axis=(0, 1)) + 1e-6)
    centroids = feats[:, :per_side].mean(axis=1)
    test = feats[:, per_side:]
    guess = np.argmin(np.linalg.norm(test[:, :, None, :] - centroids[None, None], axis=-1), axis=-1)
    return float((guess == np.arange(len(categories))[:, None]).mean())


def test_family_identity_is_learnable_from_sound_of_unseen_instances():
    sounding, _ = world_categories(categories=12, use_shared=False)
    for c in sounding:
        make_instances(c, 8, seed=1)
    assert _unseen_instance_accuracy(sounding) >= 0.7  # chance 1/12
    # The same measure cannot tell a family from itself.
    twin = world_categories(categories=1, use_shared=False)[0][0]
    make_instances(twin, 8, seed=1)
    assert _unseen_instance_accuracy([sounding[0], twin]) <= 0.75


def test_sounding_objects_range_from_small_to_over_half_the_frame(tmp_path):
    make_world(tmp_path, videos=24, seed=0, categories=3, instances=4, seconds=1.0, size_px=32, davis=0, use_shared=False, workers=1, progress=False)
    boxes = json.loads((tmp_path / "boxes.json").read_text())
    widths = [max(b[2] - b[0], b[3] - b[1]) for e in boxes for b in e["bbox"]]
    assert len(widths) == 24
    assert max(widths) > 0.5 and min(widths) < 0.25


def test_one_instance_per_category_is_the_template_world(tmp_path):
    summary = make_world(tmp_path, videos=8, seed=1, categories=2, instances=1, seconds=1.0, size_px=32, davis=0, use_shared=False, workers=1, progress=False)
    assert all(len(c["instances"]) == 1 for c in summary["categories"])
    assert summary["heldout_instances"] == []
    assert not (tmp_path / "splits" / "test_seen.csv").exists()
    rows = _rows(tmp_path / "labels.csv")
    assert {r["instance"] for r in rows} == {f"{c}/00" for c in summary["sounding_categories"]}
    test = _rows(tmp_path / "splits" / "test.csv")
    train = {r["instance"] for r in _rows(tmp_path / "splits" / "train.csv")}
    assert test and {r["instance"] for r in test} <= train  # test: new videos of the templates


def test_bad_split_parameters_raise(tmp_path):
    with pytest.raises(ValueError, match="heldout_categories"):
        make_world(tmp_path, videos=4, categories=2, heldout_categories=2, use_shared=False, progress=False)
    with pytest.raises(ValueError, match="heldout_instances"):
        make_world(tmp_path, videos=4, categories=2, heldout_instances=1.0, use_shared=False, progress=False)
    with pytest.raises(ValueError, match="instances"):
        make_world(tmp_path, videos=4, instances=0, use_shared=False, progress=False)


def test_cli_passes_the_instance_flags(tmp_path):
    from avlearn.data.cli import main as data_cli

    argv = ["synth", "--out", str(tmp_path), "--videos", "6", "--seconds", "1", "--size", "32", "--categories", "3", "--instances", "4"]
    assert data_cli([*argv, "--heldout-instances", "0.5", "--heldout-categories", "1", "--no-shared", "--davis", "0", "--workers", "1"]) == 0
    meta = json.loads((tmp_path / "world.json").read_text())
    assert meta["kind"] == "av" and meta["parameters"]["size_px"] == 32 and meta["parameters"]["seconds"] == 1.0
    assert len(meta["heldout_instances"]) == 2 * 2 and len(meta["heldout_categories"]) == 1
    assert all(len(c["instances"]) == 4 for c in meta["categories"])
