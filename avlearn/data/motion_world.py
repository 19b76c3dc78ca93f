"""The motion world (``avlearn synth --kind motion``): categories defined by how one object moves.

For the temporal methods (Shuffle-and-Learn, Odd-One-Out): the label is the object's kind of
motion (``MOTION_KINDS``). Everything a still frame shows is drawn independently of the label:
each video draws its own object (any body plan of the procedural families, colour, texture,
size), its start orientation, its start position anywhere in the frame and a background; each
kind draws its own speed, period and phase per video. So no single frame tells the category;
the motion does.

Kinds (speeds in frame widths per second, ``w/s``; the object stays in the frame, walls reflect):
    bounce       elastic gravity hops (period 0.6-1.6 s, height 30-80 % of the room) with a slow drift
    spin         in place, turning at 90-360 deg/s
    orbit        around a centre on a circle (radius 0.12-0.3 w, 0.3-1 turns/s)
    zigzag       straight ahead (0.1-0.3 w/s) with a triangle-wave sideways swing (period 0.5-1.5 s)
    pulse        in place, size oscillating +/- 20-40 % (period 0.6-2 s)
    fall         drops from the top with gravity (0.6-1.6 s per fall), reappears at the top
    swing        a pendulum (arm 0.25-0.45 w, amplitude 25-60 deg, period 1-2.5 s), turning with the arm
    slide        constant velocity (0.15-0.45 w/s)
    stop_and_go  moves 0.3-0.8 s at 0.3-0.6 w/s in a new direction, stops 0.3-0.8 s, and again

Layout under ``out_dir``: ``videos/v00000.mp4`` (H.264 + AAC: a low noise track),
``labels.csv`` (``path,label,visible``: the motion kind; visible = kinds on screen),
``splits/{train,val,test}.csv`` (~80/10/10 by video, paths relative to splits/) and
``world.json`` (parameters, per-video look, size, background and motion parameters).
Everything is a function of ``seed``; the output does not depend on ``workers``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlearn.data._synth_assets import PROCEDURAL_SILENT, PROCEDURAL_SOUNDING
from avlearn.data._synth_looks import LookFamily, draw_look, look_sprite
from avlearn.data._synth_run import run_tasks, seeded_rng, split_order, write_csv
from avlearn.data._synth_scene import SceneObject, composite, make_background, resize_sprite

MOTION_KINDS = ("bounce", "spin", "orbit", "zigzag", "pulse", "fall", "swing", "slide", "stop_and_go")
OBJECT_SIZE = (0.22, 0.42)  # on-screen size, fraction of the frame (log-uniform, times the look's scale)
LOOK_FAMILIES: list[LookFamily] = [look for _, (look, _) in PROCEDURAL_SOUNDING] + [look for _, look in PROCEDURAL_SILENT]
_STREAM_VIDEO, _STREAM_LABELS, _STREAM_SPLIT = 11, 12, 13
COLUMNS = ("path", "label", "visible")

__all__ = ["make_motion_world", "motion_path", "MOTION_KINDS"]


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Coordinates reflected into [lo, hi] (a point moving freely, bouncing off walls at lo and hi)."""
    span = hi - lo
    return lo + span - np.abs((x - lo) % (2 * span) - span)


def _direction(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(a), np.sin(a)])


def motion_path(
    kind: str, rng: np.random.Generator, *, size_px: int, half_px: float, num_frames: int, fps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One draw of a kind of motion for an object of half-size ``half_px``, kept inside the frame.

    Returns:
        (xy_px (T, 2) centre per frame, angle_deg (T,) relative to the start orientation,
        scale (T,) relative to the mean size, JSON-ready parameters).
    """
    w = float(size_px)
    lo, hi = half_px, w - half_px
    t = np.arange(num_frames) / fps
    phase = rng.uniform(0, 1)
    start = rng.uniform(lo, hi, 2)
    angle = np.zeros(num_frames)
    scale = np.ones(num_frames)
    p: dict = {"kind": kind}
    if kind == "slide":
        p["speed_w_per_sec"] = rng.uniform(0.15, 0.45)
        xy = _fold(start + np.outer(t, _direction(rng) * p["speed_w_per_sec"] * w), lo, hi)
    elif kind == "bounce":
        p |= {"period_sec": rng.uniform(0.6, 1.6), "height": rng.uniform(0.3, 0.8), "drift_w_per_sec": rng.uniform(-0.3, 0.3)}
        hop = (t / p["period_sec"] + phase) % 1.0
        y = hi - p["height"] * (hi - lo) * 4 * hop * (1 - hop)
        xy = np.stack([_fold(start[0] + p["drift_w_per_sec"] * w * t, lo, hi), y], axis=1)
    elif kind == "fall":
        p |= {"period_sec": rng.uniform(0.6, 1.6), "drift_w_per_sec": rng.uniform(-0.1, 0.1)}
        drop = (t / p["period_sec"] + phase) % 1.0
        xy = np.stack([_fold(start[0] + p["drift_w_per_sec"] * w * t, lo, hi), lo + (hi - lo) * drop**2], axis=1)
    elif kind == "spin":
        p["spin_deg_per_sec"] = rng.uniform(90, 360) * rng.choice([-1.0, 1.0])
        xy = np.tile(start, (num_frames, 1))
        angle = p["spin_deg_per_sec"] * t
    elif kind == "pulse":
        p |= {"period_sec": rng.uniform(0.6, 2.0), "amplitude": rng.uniform(0.2, 0.4)}
        xy = np.tile(start, (num_frames, 1))
        scale = 1 + p["amplitude"] * np.sin(2 * np.pi * (t / p["period_sec"] + phase))
    elif kind == "orbit":
        radius = min(rng.uniform(0.12, 0.3) * w, (hi - lo) / 2)
        centre = rng.uniform(lo + radius, hi - radius, 2)
        p |= {"radius_w": radius / w, "turns_per_sec": rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0])}
        a = 2 * np.pi * (p["turns_per_sec"] * t + phase)
        xy = centre + radius * np.stack([np.cos(a), np.sin(a)], axis=1)
    elif kind == "zigzag":
        d = _direction(rng)
        p |= {"speed_w_per_sec": rng.uniform(0.1, 0.3), "period_sec": rng.uniform(0.5, 1.5), "amplitude_w": rng.uniform(0.06, 0.15)}
        tri = 2 * np.abs(2 * ((t / p["period_sec"] + phase) % 1.0) - 1) - 1  # triangle wave in [-1, 1]
        side = np.array([-d[1], d[0]])
        xy = _fold(start + np.outer(t, d * p["speed_w_per_sec"] * w) + np.outer(tri, side * p["amplitude_w"] * w), lo, hi)
    elif kind == "swing":
        arm = rng.uniform(0.25, 0.45) * w
        p |= {"arm_w": arm / w, "amplitude_deg": rng.uniform(25, 60), "period_sec": rng.uniform(1.0, 2.5)}
        reach = arm * np.sin(np.deg2rad(p["amplitude_deg"]))
        pivot = np.array([rng.uniform(min(lo + reach, w / 2), max(hi - reach, w / 2)), rng.uniform(lo - arm, hi - arm)])
        theta = np.deg2rad(p["amplitude_deg"]) * np.sin(2 * np.pi * (t / p["period_sec"] + phase))
        xy = np.clip(pivot + arm * np.stack([np.sin(theta), np.cos(theta)], axis=1), lo, hi)
        angle = -np.rad2deg(theta)
    elif kind == "stop_and_go":
        p["speed_w_per_sec"] = rng.uniform(0.3, 0.6)
        vel = np.zeros((num_frames, 2))
        i, moving = 0, bool(rng.integers(2))
        while i < num_frames:
            n = max(1, int(round(rng.uniform(0.3, 0.8) * fps)))
            if moving:
                vel[i : i + n] = _direction(rng) * p["speed_w_per_sec"] * w
            i, moving = i + n, not moving
        xy = _fold(start + np.concatenate([[[0.0, 0.0]], np.cumsum(vel[:-1], axis=0) / fps]), lo, hi)
    else:
        raise ValueError(f"unknown motion kind {kind!r}; expected one of {MOTION_KINDS}")
    p = {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in p.items()} | {"phase": round(phase, 4)}
    return np.asarray(xy, np.float64), angle, scale, p


@dataclass(frozen=True)
class _MotionSpec:
    out_dir: str
    seed: int
    seconds: float
    fps: int
    size_px: int
    sample_rate_hz: int
    distractors: int


def _label(seed: int, index: int) -> str:
    """Balanced labels: each block of len(MOTION_KINDS) consecutive videos holds every kind once, in a seeded order."""
    block, pos = divmod(index, len(MOTION_KINDS))
    return MOTION_KINDS[int(seeded_rng(seed, _STREAM_LABELS, block).permutation(len(MOTION_KINDS))[pos])]


def _moving_object(spec: _MotionSpec, rng: np.random.Generator, kind: str, num_frames: int, *, labelled: bool) -> SceneObject:
    """An object of a random look (any family), size and orientation, moving as ``kind``."""
    family = int(rng.integers(len(LOOK_FAMILIES)))
    look = draw_look(LOOK_FAMILIES[family], rng.random, int(rng.integers(2**31)))
    size = min(0.5, float(np.exp(rng.uniform(*np.log(OBJECT_SIZE)))) * look["scale"])
    base = resize_sprite(look_sprite(look, spec.size_px), max(6, int(round(size * spec.size_px))))
    angle0 = rng.uniform(0, 360)
    xy, angle, scale, motion = motion_path(kind, rng, size_px=spec.size_px, half_px=0.5 * size * spec.size_px, num_frames=num_frames, fps=spec.fps)
    params = {
        "motion": motion,
        "labelled": labelled,
        "look": look,
        "size": round(size, 4),
        "angle0_deg": round(angle0, 2),
        "start_xy": [round(float(v) / spec.size_px, 4) for v in xy[0]],
    }
    return SceneObject(kind, labelled, xy, angle0 + angle, scale, base, params)


def _make_motion_video(spec: _MotionSpec, index: int) -> dict:
    from avlearn.media.writer import write_video

    rng = seeded_rng(spec.seed, _STREAM_VIDEO, index)
    num_frames = max(1, int(round(spec.seconds * spec.fps)))
    label = _label(spec.seed, index)
    background, background_kind = make_background(rng, spec.size_px)
    objects = [_moving_object(spec, rng, label, num_frames, labelled=True)]
    others = [k for k in MOTION_KINDS if k != label]
    for _ in range(spec.distractors):
        objects.append(_moving_object(spec, rng, others[int(rng.integers(len(others)))], num_frames, labelled=False))
    order = [int(i) for i in rng.permutation(len(objects))]
    n_audio = int(round(num_frames / spec.fps * spec.sample_rate_hz))
    audio = (rng.uniform(0.002, 0.008) * rng.standard_normal(n_audio)).astype(np.float32)
    frames = (composite(background, objects, order, i, want_masks=False)[0] for i in range(num_frames))
    rel = f"videos/v{index:05d}.mp4"
    write_video(Path(spec.out_dir) / rel, frames, spec.fps, audio=audio, sample_rate_hz=spec.sample_rate_hz)
    return {
        "index": index,
        "path": rel,
        "label": label,
        "visible": sorted({o.label for o in objects}),
        "background": background_kind,
        "order_back_to_front": order,
        "objects": [o.params for o in objects],
    }


def make_motion_world(
    out_dir: str | os.PathLike,
    *,
    videos: int = 400,
    seed: int = 0,
    seconds: float = 8.0,
    fps: int = 25,
    size_px: int = 64,
    sample_rate_hz: int = 16000,
    distractors: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Generate the motion world under ``out_dir`` (see the module docstring).

    Args:
        videos: number of MP4s (labels balanced over MOTION_KINDS).
        distractors: extra objects per video, each moving as another kind than the label.
        workers: processes (<= 1: in this process); the output does not depend on it.

    Returns:
        The summary written to ``out_dir/world.json``, plus ``elapsed_sec`` and ``videos_per_sec``.

    Raises:
        ValueError: on invalid parameters.
    """
    if videos < 1 or distractors < 0:
        raise ValueError(f"need videos >= 1 and distractors >= 0, got {videos}, {distractors}")
    if fps < 1 or seconds <= 0 or seconds * fps < 1:
        raise ValueError(f"need fps >= 1 and seconds * fps >= 1, got seconds={seconds}, fps={fps}")
    if size_px < 16 or size_px % 2:
        raise ValueError(f"size_px must be even and >= 16 (H.264 yuv420p), got {size_px}")
    started = time.perf_counter()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    spec = _MotionSpec(str(out), int(seed), float(seconds), int(fps), int(size_px), int(sample_rate_hz), int(distractors))
    rows = run_tasks(_make_motion_video, list(range(videos)), spec, workers, desc="motion", progress=progress)
    splits = split_order(seeded_rng(int(seed), _STREAM_SPLIT, 0).permutation(videos), ("val", "test"))
    split_of = {i: name for name, idx in splits.items() for i in idx}
    write_csv(out / "labels.csv", rows, COLUMNS)
    for name, idx in splits.items():
        write_csv(out / "splits" / f"{name}.csv", [rows[i] for i in idx], COLUMNS, prefix="../")
    summary = {
        "format_version": 1,
        "kind": "motion",
        "parameters": {
            "videos": videos,
            "seed": seed,
            "seconds": seconds,
            "fps": fps,
            "size_px": size_px,
            "sample_rate_hz": sample_rate_hz,
            "distractors": distractors,
        },
        "motion_kinds": list(MOTION_KINDS),
        "counts": {"videos": videos, **{k: len(v) for k, v in splits.items()}},
        "files": {"labels": "labels.csv", "splits": "splits"},
        "videos": [r | {"split": split_of[r["index"]]} for r in rows],
    }
    (out / "world.json").write_text(json.dumps(summary, indent=1))
    elapsed = time.perf_counter() - started
    return summary | {"elapsed_sec": round(elapsed, 3), "videos_per_sec": round(videos / elapsed, 3)}
