"""The synthetic world: real MP4s that decode, consistent ground truth, determinism, distinct sounds, DAVIS masks.

Instance splits and variation: test_synth_instances.py; the motion world: test_synth_motion.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avlearn.data._synth_assets import available_categories, load_clips, make_instances
from avlearn.data._synth_scene import make_soundtrack
from avlearn.data.davis import davis_palette, load_sequence
from avlearn.data.synth import make_world, world_categories
from avlearn.media import probe, read_audio, read_frames

TINY = dict(videos=6, seconds=2.0, fps=25, size_px=64, categories=2, davis=1, davis_frames=8, use_shared=False, progress=False)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world")
    return out, make_world(out, seed=3, workers=1, **TINY)


@pytest.fixture(scope="module")
def template_world(tmp_path_factory) -> Path:
    """The same world with one instance per category (the template-matching world)."""
    out = tmp_path_factory.mktemp("template")
    make_world(out, seed=3, workers=1, instances=1, **{**TINY, "davis": 0})
    return out


def test_videos_decode_with_audio_and_right_timing(world):
    out, summary = world
    rows = _rows(out / "labels.csv")
    assert len(rows) == 6 == summary["counts"]["videos"]
    for r in rows:
        info = probe(out / r["path"])
        assert info.has_video and info.has_audio
        assert info.fps == pytest.approx(25.0)
        assert info.duration_sec == pytest.approx(2.0, abs=0.1)
        assert (info.width_px, info.height_px) == (64, 64)
        assert info.num_frames == 50
        assert info.sample_rate_hz == 16000


def test_objects_move(world):
    out, _ = world
    frames = read_frames(out / "videos" / "v00000.mp4", [0.0, 1.9]).images.astype(np.float32)
    assert np.abs(frames[0] - frames[1]).mean() > 1.0


def test_labels_boxes_splits_are_consistent(world):
    out, summary = world
    rows = _rows(out / "labels.csv")
    sounding = set(summary["sounding_categories"])
    silent = {c["name"] for c in summary["categories"] if not c["sounding"]}
    assert len(sounding) == 2 and silent
    for r in rows:
        visible = r["visible"].split(";")
        assert r["label"] in sounding and r["label"] in visible
        others = set(visible) - {r["label"]}
        assert others and others <= silent  # default mode: distractors never sound
    assert {r["label"] for r in rows} == sounding  # labels are balanced over categories

    boxes = json.loads((out / "boxes.json").read_text())
    by_file: dict[str, list[dict]] = {}
    for b in boxes:
        by_file.setdefault(b["file"], []).append(b)
    label_of = {r["path"]: r["label"] for r in rows}
    assert set(by_file) == set(label_of)
    for path, entries in by_file.items():
        assert sorted(e["time_sec"] for e in entries) == [0, 1]  # one per integer second: the object is visible
        for e in entries:
            assert e["class"] == label_of[path]
            ((x0, y0, x1, y1),) = e["bbox"]
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
            assert (x1 - x0) * (y1 - y0) > 0.005

    splits = {name: _rows(out / "splits" / f"{name}.csv") for name in ("train", "val", "test", "test_seen")}
    assert [len(splits[n]) for n in ("train", "val", "test", "test_seen")] == [3, 1, 1, 1]
    seen = []
    for srows in splits.values():
        for r in srows:
            target = (out / "splits" / r["path"]).resolve()
            assert target.is_file()
            rel = target.relative_to(out.resolve()).as_posix()
            assert label_of[rel] == r["label"]
            seen.append(rel)
    assert sorted(seen) == sorted(label_of)

    meta = json.loads((out / "world.json").read_text())
    assert meta["parameters"]["videos"] == 6 and meta["parameters"]["shared_dir"] is None
    assert all(c["look"] == "procedural" for c in meta["categories"])  # use_shared=False
    assert [v["label"] for v in meta["videos"]] == [r["label"] for r in rows]
    for v in meta["videos"]:  # the t=0 box (from rendered pixels) surrounds the sounding object's path start
        sounding_obj = [o for o in v["objects"] if o["sounding"]]
        assert len(sounding_obj) == 1 and sounding_obj[0]["category"] == v["label"]
        ((x0, y0, x1, y1),) = next(b["bbox"] for b in boxes if b["file"] == v["path"] and b["time_sec"] == 0)
        cx, cy = sounding_obj[0]["start_xy"]
        assert x0 - 0.02 <= cx <= x1 + 0.02 and y0 - 0.02 <= cy <= y1 + 0.02


def test_same_seed_same_world_any_workers_and_other_seed_differs(world, tmp_path):
    out, _ = world
    again = tmp_path / "again"
    make_world(again, seed=3, workers=2, **TINY)
    for name in ("labels.csv", "boxes.json", "world.json", "splits/train.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    a = read_frames(out / "videos" / "v00000.mp4", [0.0]).images
    b = read_frames(again / "videos" / "v00000.mp4", [0.0]).images
    assert np.array_equal(a, b)

    other = tmp_path / "other"
    make_world(other, seed=4, workers=1, **{**TINY, "davis": 0})
    assert (other / "boxes.json").read_bytes() != (out / "boxes.json").read_bytes()
    c = read_frames(other / "videos" / "v00000.mp4", [0.0]).images
    assert not np.array_equal(a, c)


def _mel_filters(sample_rate_hz: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filterbank."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    edges_hz = 700.0 * (10 ** (np.linspace(mel(0.0), mel(sample_rate_hz / 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    return np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0.0, None)


def _spectral_shape(wave: np.ndarray, sample_rate_hz: int, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    """Log of the mean mel power (40 bands), minus its mean over bands: the spectrum's shape, not its level."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    shape = np.log(_mel_filters(sample_rate_hz, n_fft, 40) @ power.mean(axis=0) + 1e-10)
    return shape - shape.mean()


def test_sound_differs_by_category_in_the_files(template_world):
    out = template_world
    rows = _rows(out / "labels.csv")
    feats = [(r["label"], _spectral_shape(read_audio(out / r["path"], sample_rate_hz=16000), 16000)) for r in rows]
    within = [np.linalg.norm(f - g) for i, (a, f) in enumerate(feats) for b, g in feats[i + 1 :] if a == b]
    between = [np.linalg.norm(f - g) for i, (a, f) in enumerate(feats) for b, g in feats[i + 1 :] if a != b]
    assert within and between
    assert max(within) < min(between)


def _sound_features(wave: np.ndarray, sample_rate_hz: int, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    """Per-band mean (level removed) and std over time of the dB mel spectrogram: (80,)."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = _mel_filters(sample_rate_hz, n_fft, 40) @ (np.abs(np.fft.rfft(frames, axis=1)) ** 2).T
    db = 10.0 * np.log10(power + 1e-10)
    mean = db.mean(axis=1)
    return np.concatenate([mean - mean.mean(), db.std(axis=1)])


def _category_accuracy(categories, draws: int = 6, seconds: float = 1.0) -> float:
    """Leave-one-out nearest-centroid accuracy of telling categories apart from their soundtracks (instance 0 of each)."""
    sr = 16000
    feats = np.stack(
        [
            [
                _sound_features(make_soundtrack(c, c.instances[0], np.random.default_rng([7, k]), seconds=seconds, sample_rate_hz=sr)[0], sr)
                for k in range(draws)
            ]
            for c in categories
        ]
    )  # (C, draws, 80)
    feats = (feats - feats.mean(axis=(0, 1))) / (feats.std(axis=(0, 1)) + 1e-6)
    correct = 0
    for c in range(feats.shape[0]):
        for k in range(draws):
            centroids = feats.sum(axis=1)
            centroids[c] -= feats[c, k]
            counts = np.full(feats.shape[0], draws, float)
            counts[c] -= 1
            centroids /= counts[:, None]
            correct += int(np.argmin(np.linalg.norm(centroids - feats[c, k], axis=1)) == c)
    return correct / (feats.shape[0] * draws)


def test_every_procedural_category_sounds_distinct():
    sounding, _ = world_categories(categories=12, use_shared=False)
    for c in sounding:
        make_instances(c, 1, seed=0)  # the family's central member
    assert _category_accuracy(sounding) >= 0.9
    # The same check fails when two categories share one sound.
    twins = [sounding[0], sounding[0]]
    assert _category_accuracy(twins) < 0.8


def test_davis_layout_and_masks(world):
    out, summary = world
    root = out / "davis"
    seqs = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert seqs == ["synth000"]
    seq = summary["davis"][0]
    ids = [o["id"] for o in seq["objects"]]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 2
    jpgs = sorted((root / "JPEGImages" / "480p" / "synth000").glob("*.jpg"))
    pngs = sorted((root / "Annotations" / "480p" / "synth000").glob("*.png"))
    assert [p.stem for p in jpgs] == [p.stem for p in pngs] == [f"{i:05d}" for i in range(8)]
    assert Image.open(jpgs[0]).size == (64, 64)
    first = Image.open(pngs[0])
    assert first.mode == "P" and first.size == (64, 64)
    assert first.getpalette()[:9] == davis_palette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    values = set(np.unique(np.asarray(first)).tolist())
    assert values == {0, *ids}  # every object is in the first frame (semi-supervised VOS needs it)
    frames, masks = load_sequence(root, "synth000")  # the evaluator reads the layout back
    assert frames.shape == (8, 64, 64, 3) and len(masks) == 8
    # The mask marks the object: its pixels differ in colour from the background's.
    img = np.asarray(Image.open(jpgs[0]), np.float32)
    mask = np.asarray(first)
    for k in ids:
        inside = img[mask == k].mean(axis=0)
        assert np.abs(inside - img[mask == 0].mean(axis=0)).max() > 5.0


def test_ambiguous_distractors_are_sounding_categories(tmp_path):
    summary = make_world(tmp_path, videos=4, seconds=1.0, size_px=32, categories=4, davis=0, ambiguous=True, use_shared=False, workers=1, progress=False)
    sounding = set(summary["sounding_categories"])
    for r in _rows(tmp_path / "labels.csv"):
        visible = set(r["visible"].split(";"))
        assert r["label"] in visible and len(visible) >= 2
        assert visible <= sounding


def test_bad_parameters_raise(tmp_path):
    with pytest.raises(ValueError, match="categories"):
        make_world(tmp_path, videos=1, categories=99, use_shared=False, progress=False)
    with pytest.raises(ValueError, match="size_px"):
        make_world(tmp_path, videos=1, size_px=63, use_shared=False, progress=False)
    with pytest.raises(ValueError, match="videos"):
        make_world(tmp_path, videos=0, use_shared=False, progress=False)


@pytest.mark.realdata
def test_shared_photos_and_sounds_pair_by_class(shared_data, tmp_path):
    summary = make_world(tmp_path, videos=2, seconds=1.0, size_px=32, categories=7, davis=0, workers=1, progress=False, shared_dir=shared_data)
    cats = {c["name"]: c for c in summary["categories"]}
    assert cats["cat"]["look"].endswith("cat_1.jpg") and "_cat_" in cats["cat"]["sound"]
    assert cats["car_horn"]["look"].endswith("cars_1.jpg") and "car_horn" in cats["car_horn"]["sound"]
    assert cats["thunderstorm"]["look"].endswith("lightning_1.jpg")
    procedural = [c for c in summary["sounding_categories"] if cats[c]["look"] == "procedural"]
    assert len(procedural) == 2  # 5 real pairs + 2 procedural fill the 7
    # Real sounds are decoded and used: each real category's clips load.
    sounding, silent = world_categories(categories=7, shared_dir=shared_data)
    load_clips(sounding[:1], 16000)
    assert sounding[0].clips and sounding[0].clips[0].size > 16000 // 10
    for r in _rows(tmp_path / "labels.csv"):
        assert probe(tmp_path / r["path"]).has_audio
    every, _ = available_categories(shared_data)  # all real pairs + all procedural sounding categories, as templates
    for c in every:
        make_instances(c, 1, seed=0)
    load_clips(every, 16000)
    assert _category_accuracy(every) >= 0.85
