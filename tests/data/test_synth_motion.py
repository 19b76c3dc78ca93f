"""The motion world: labels are kinds of motion, still appearance says nothing about them, files and splits are sound."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from avlearn.data._synth_looks import PLANS, TEXTURES
from avlearn.data.cli import main as data_cli
from avlearn.data.motion_world import MOTION_KINDS, make_motion_world, motion_path
from avlearn.media import probe, read_frames

FPS, SIZE = 25, 64


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _nearest_centroid_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out nearest-centroid accuracy on standardised features x (N, D) with labels y (N,)."""
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    classes = sorted(set(y.tolist()))
    correct = 0
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        centroids = np.stack([x[keep & (y == c)].mean(axis=0) for c in classes])
        correct += int(classes[int(np.argmin(np.linalg.norm(centroids - x[i], axis=1)))] == y[i])
    return correct / len(y)


def _trajectory_stats(xy: np.ndarray, angle: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Generic statistics of a path (frame widths, seconds): speed level and spread, still frames, vertical
    acceleration (typical and mean absolute), turning of the heading (typical, sharp turns per second),
    rotation and size change."""
    v = np.diff(xy, axis=0) * FPS / SIZE
    speed = np.linalg.norm(v, axis=1)
    accel_y = np.diff(v[:, 1]) * FPS
    moving = (speed[1:] > 0.02) & (speed[:-1] > 0.02)
    turn = np.abs(np.angle(np.exp(1j * np.diff(np.arctan2(v[:, 1], v[:, 0])))))[moving]
    seconds = len(xy) / FPS
    return np.array([
        speed.mean(), speed.std() / (speed.mean() + 1e-3), (speed < 0.01).mean(),
        np.median(accel_y), np.abs(accel_y).mean(),
        np.median(turn) if turn.size else 0.0, (turn > 0.5).sum() / seconds,
        np.abs(np.diff(angle)).mean() * FPS, np.diff(angle).std() * FPS, scale.std(),
    ])  # fmt: skip


def _paths(kind: str, draws: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]:
    return [
        motion_path(kind, np.random.default_rng([MOTION_KINDS.index(kind), k]), size_px=SIZE, half_px=10.0, num_frames=8 * FPS, fps=FPS) for k in range(draws)
    ]


def test_kinds_of_motion_differ_as_designed():
    stats, labels = [], []
    for kind in MOTION_KINDS:
        for xy, angle, scale, _ in _paths(kind, 12):
            assert xy.shape == (8 * FPS, 2) and (xy >= 10.0 - 1e-6).all() and (xy <= SIZE - 10.0 + 1e-6).all()  # in the frame
            stats.append(_trajectory_stats(xy, angle, scale))
            labels.append(kind)
    assert _nearest_centroid_accuracy(np.stack(stats), np.array(labels)) >= 0.9  # chance 1/9

    def still(xy):
        return np.linalg.norm(np.diff(xy, axis=0), axis=1) < 1e-9

    for xy, angle, scale, _ in _paths("spin", 4):
        assert still(xy).all() and np.abs(np.diff(angle)).min() > 0 and np.ptp(scale) == 0
    for xy, angle, scale, _ in _paths("pulse", 4):
        assert still(xy).all() and np.ptp(angle) == 0 and np.ptp(scale) > 0.3
    for xy, _, _, p in _paths("orbit", 4):  # on a circle (least-squares fit) of the drawn radius
        (cx, cy, _), *_ = np.linalg.lstsq(np.column_stack([2 * xy, np.ones(len(xy))]), (xy**2).sum(axis=1), rcond=None)
        r = np.linalg.norm(xy - [cx, cy], axis=1)
        assert np.ptp(r) < 0.01 * r.mean() and r.mean() == pytest.approx(p["radius_w"] * SIZE, rel=0.01)
    for xy, _, _, _ in _paths("fall", 4):
        dy = np.diff(xy[:, 1])
        assert (dy >= 0).mean() > 0.8 and (dy < -5).any()  # falls, and jumps back to the top
    for xy, _, _, _ in _paths("stop_and_go", 4):
        assert 0.2 < still(xy).mean() < 0.8
    for xy, angle, _, _ in _paths("swing", 4):
        assert np.ptp(angle) > 40 and not still(xy).any()
    for xy, _, _, p in _paths("slide", 4):
        speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) * FPS / SIZE
        assert np.median(speed) == pytest.approx(p["speed_w_per_sec"], rel=0.02)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("motion")
    return out, make_motion_world(out, videos=63, seed=4, seconds=1.0, size_px=32, workers=1, progress=False)


def _appearance(v: dict, first_frame: np.ndarray) -> np.ndarray:
    """What a still frame shows: the object's plan, texture, colour, size, orientation, start position; the mean colour."""
    obj = v["objects"][0]
    look = obj["look"]
    onehot = [float(look["plan"] == p) for p in PLANS] + [float(look["texture"] == t) for t in TEXTURES]
    return np.array(
        [
            *onehot,
            *look["color"],
            obj["size"],
            np.cos(np.deg2rad(obj["angle0_deg"])),
            np.sin(np.deg2rad(obj["angle0_deg"])),
            *obj["start_xy"],
            *first_frame.reshape(-1, 3).mean(axis=0),
        ]
    )


def test_appearance_says_nothing_about_the_label(world):
    out, summary = world
    rows = _rows(out / "labels.csv")
    labels = np.array([r["label"] for r in rows])
    assert sorted(set(labels)) == sorted(MOTION_KINDS) and all((labels == k).sum() == 7 for k in MOTION_KINDS)  # balanced
    feats = np.stack([_appearance(v, read_frames(out / v["path"], [0.0]).images[0]) for v in summary["videos"]])
    assert _nearest_centroid_accuracy(feats, labels) < 0.3  # chance 1/9; the same classifier reads motion at >= 0.9


def test_files_splits_and_determinism(world, tmp_path):
    out, _ = world
    rows = _rows(out / "labels.csv")
    assert list(rows[0]) == ["path", "label", "visible"] and all(r["visible"] == r["label"] for r in rows)
    info = probe(out / rows[0]["path"])
    assert info.has_audio and info.fps == pytest.approx(25.0) and info.num_frames == 25 and (info.width_px, info.height_px) == (32, 32)
    frames = read_frames(out / rows[0]["path"], [0.0, 0.96]).images.astype(np.float32)
    assert np.abs(frames[0] - frames[1]).mean() > 0.5  # something moves (spin and pulse included)
    splits = {name: [r["path"] for r in _rows(out / "splits" / f"{name}.csv")] for name in ("train", "val", "test")}
    assert [len(splits[n]) for n in ("train", "val", "test")] == [51, 6, 6]
    assert sorted(p.removeprefix("../") for ps in splits.values() for p in ps) == sorted(r["path"] for r in rows)

    again = tmp_path / "again"
    make_motion_world(again, videos=63, seed=4, seconds=1.0, size_px=32, workers=2, progress=False)
    for name in ("labels.csv", "world.json", "splits/test.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_cli_makes_a_motion_world_with_distractors(tmp_path):
    assert (
        data_cli(
            ["synth", "--kind", "motion", "--out", str(tmp_path), "--videos", "3", "--seconds", "1", "--size", "32", "--distractors", "2", "--workers", "1"]
        )
        == 0
    )
    meta = json.loads((tmp_path / "world.json").read_text())
    for v in meta["videos"]:
        kinds = [o["motion"]["kind"] for o in v["objects"]]
        assert len(kinds) == 3 and kinds[0] == v["label"] and v["label"] not in kinds[1:]
        assert v["visible"] == sorted(set(kinds))
