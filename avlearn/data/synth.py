"""The synthetic audio-visual world (``avlearn synth``): H.264 + AAC MP4s with full ground truth.

Each video shows ONE sounding object and one or more silent distractors moving on
known paths (constant velocity, acceleration, gravity bounces with energy loss,
sliding in from an edge with friction; spinning and growing or shrinking), drawn
in a random depth order over a textured background. The soundtrack is the sounding
category's sound (a random excerpt / pitch / gain, in on-off events) over low noise.

Layout written under ``out_dir``::

    videos/v00000.mp4 ...          H.264 + AAC, size_px x size_px, fps, sample_rate_hz
    labels.csv                     path,label,visible (path relative to out_dir)
    boxes.json                     VGG-SS style: [{"file", "class", "bbox": [[x0,y0,x1,y1]], "time_sec"}]
    splits/{train,val,test}.csv    same columns, paths relative to splits/ (../videos/...)
    davis/JPEGImages/480p/<seq>/00000.jpg, davis/Annotations/480p/<seq>/00000.png,
    davis/ImageSets/2017/val.txt   DAVIS-2017 layout, palette PNG masks (0 = background, ids 1..K)
    world.json                     parameters, categories, per-video and per-sequence metadata

Everything is a function of ``seed``: video i draws from an RNG seeded by (seed, i),
so the output does not depend on ``workers``.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from avlearn.data._synth_assets import Category, available_categories, default_shared_dir, load_assets
from avlearn.data._synth_scene import SceneObject, composite, make_background, make_object, make_soundtrack
from avlearn.eval.davis import write_mask

FORMAT_VERSION = 1
_STREAM_VIDEO, _STREAM_DAVIS, _STREAM_LABELS, _STREAM_SPLIT = 1, 2, 3, 4
_SPRITE_SCALE = 0.5  # category sprites are rendered at this fraction of the frame size (before per-object resize)

__all__ = ["make_world", "world_categories", "FORMAT_VERSION"]


@dataclass
class _WorldSpec:
    """Everything a worker needs to draw any video of the world (picklable)."""

    out_dir: str
    seed: int
    sounding: list[Category]
    silent: list[Category]
    seconds: float
    fps: int
    size_px: int
    sample_rate_hz: int
    ambiguous: bool
    max_distractors: int
    davis_frames: int

    @property
    def all(self) -> list[Category]:
        return self.sounding + self.silent


_SPEC: _WorldSpec | None = None


def _init_worker(spec: _WorldSpec) -> None:
    global _SPEC
    _SPEC = spec


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def world_categories(*, categories: int = 8, use_shared: bool = True, shared_dir: str | os.PathLike | None = None) -> tuple[list[Category], list[Category]]:
    """The (sounding, silent) categories a world would use, without rendering assets.

    Real photo + sound pairs from ``shared_dir`` (default ../shared/data) come first when
    ``use_shared`` and the folder exists; procedural categories fill the rest.

    Raises:
        ValueError: when ``categories`` is below 1 or above what is available.
    """
    shared = _resolve_shared(use_shared, shared_dir)
    sounding, silent = available_categories(shared)
    if not 1 <= categories <= len(sounding):
        raise ValueError(f"categories must be in [1, {len(sounding)}] (available: {[c.name for c in sounding]}), got {categories}")
    return sounding[:categories], silent


def _resolve_shared(use_shared: bool, shared_dir: str | os.PathLike | None) -> Path | None:
    if not use_shared:
        return None
    path = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    return path if (path / "labels.csv").is_file() else None


def _label_index(seed: int, index: int, k: int) -> int:
    """Balanced labels: each block of k consecutive videos holds every category once, in a seeded order."""
    block, pos = divmod(index, k)
    return int(_rng(seed, _STREAM_LABELS, block).permutation(k)[pos])


def _scene(spec: _WorldSpec, rng: np.random.Generator, label: int, num_frames: int, *, allow_offscreen: bool) -> tuple[list[SceneObject], list[int], np.ndarray]:
    """Objects (the sounding one first), their back-to-front order and the (H, W, 3) float32 background."""
    background = make_background(rng, spec.size_px)
    n_dis = int(rng.integers(1, spec.max_distractors + 1))
    k = len(spec.sounding)
    if spec.ambiguous:
        pool = [i for i in range(k) if i != label] or [label]
    else:
        pool = list(range(k, k + len(spec.silent)))
    dis = rng.choice(pool, size=n_dis, replace=n_dis > len(pool))
    common = dict(rng=rng, size_px=spec.size_px, num_frames=num_frames, fps=spec.fps, allow_offscreen=allow_offscreen)
    objects = [make_object(label, spec.all[label], sounding=True, **common)]
    objects += [make_object(int(d), spec.all[int(d)], sounding=False, **common) for d in dis]
    order = [int(i) for i in rng.permutation(len(objects))]
    return objects, order, background


def _visible(spec: _WorldSpec, objects: list[SceneObject]) -> list[str]:
    return sorted({spec.all[o.category].name for o in objects})


def _video_name(index: int) -> str:
    return f"videos/v{index:05d}.mp4"


def _make_video(index: int) -> dict:
    """Render, encode and describe video ``index`` of the world in ``_SPEC``."""
    from avlearn.media.writer import write_video

    spec = _SPEC
    assert spec is not None
    rng = _rng(spec.seed, _STREAM_VIDEO, index)
    num_frames = max(1, int(round(spec.seconds * spec.fps)))
    label = _label_index(spec.seed, index, len(spec.sounding))
    objects, order, background = _scene(spec, rng, label, num_frames, allow_offscreen=True)
    audio, sound_info = make_soundtrack(spec.sounding[label], rng, seconds=num_frames / spec.fps, sample_rate_hz=spec.sample_rate_hz)
    boxes: list[dict] = []
    w = h = spec.size_px

    def frames():
        for i in range(num_frames):
            frame, obj_boxes, _ = composite(background, objects, order, i, want_masks=False)
            if i % spec.fps == 0:
                b = obj_boxes[0]
                if b is not None:
                    bbox = [round(b[0] / w, 5), round(b[1] / h, 5), round(b[2] / w, 5), round(b[3] / h, 5)]
                    boxes.append({"time_sec": i // spec.fps, "bbox": bbox})
            yield frame

    rel = _video_name(index)
    write_video(Path(spec.out_dir) / rel, frames(), spec.fps, audio=audio, sample_rate_hz=spec.sample_rate_hz)
    name = spec.sounding[label].name
    return {
        "index": index,
        "path": rel,
        "label": name,
        "visible": _visible(spec, objects),
        "order_back_to_front": order,
        "objects": [o.params for o in objects],
        "sound": sound_info,
        "boxes": boxes,
    }


def _make_davis(seq_index: int) -> dict:
    """Render one DAVIS-layout sequence (JPEG frames + palette PNG masks)."""
    spec = _SPEC
    assert spec is not None
    rng = _rng(spec.seed, _STREAM_DAVIS, seq_index)
    label = int(rng.integers(len(spec.sounding)))
    objects, order, background = _scene(spec, rng, label, spec.davis_frames, allow_offscreen=False)
    seq = f"synth{seq_index:03d}"
    root = Path(spec.out_dir) / "davis"
    img_dir = root / "JPEGImages" / "480p" / seq
    ann_dir = root / "Annotations" / "480p" / seq
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for i in range(spec.davis_frames):
        frame, _, ids = composite(background, objects, order, i, want_masks=True)
        Image.fromarray(frame).save(img_dir / f"{i:05d}.jpg", quality=95)
        write_mask(ann_dir / f"{i:05d}.png", ids)
    return {
        "sequence": seq,
        "label": spec.sounding[label].name,
        "num_frames": spec.davis_frames,
        "objects": [{"id": k + 1, **o.params} for k, o in enumerate(objects)],
        "order_back_to_front": order,
    }


def _split(seed: int, n: int) -> dict[str, list[int]]:
    """~80/10/10 train/val/test by video, deterministic for a seed (val and test get >= 1 when n >= 3)."""
    perm = _rng(seed, _STREAM_SPLIT, 0).permutation(n)
    n_eval = max(1, int(round(0.1 * n))) if n >= 3 else 0
    return {
        "val": sorted(int(i) for i in perm[:n_eval]),
        "test": sorted(int(i) for i in perm[n_eval : 2 * n_eval]),
        "train": sorted(int(i) for i in perm[2 * n_eval :]),
    }


def _write_csv(path: Path, rows: list[dict], prefix: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "visible"])
        for r in rows:
            w.writerow([prefix + r["path"], r["label"], ";".join(r["visible"])])


def _run_task(task: tuple[str, int]) -> dict:
    kind, index = task
    return _make_video(index) if kind == "video" else _make_davis(index)


def _run(tasks: list[tuple[str, int]], spec: _WorldSpec, workers: int, bar) -> dict[tuple[str, int], dict]:
    """Run ("video" | "davis", index) tasks, in this process or a process pool; results by task."""
    results: dict[tuple[str, int], dict] = {}
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(spec)
        for task in tasks:
            results[task] = _run_task(task)
            bar.update(1)
        return results
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(spec,)) as pool:
        futures = {pool.submit(_run_task, task): task for task in tasks}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    return results


def make_world(
    out_dir: str | os.PathLike,
    *,
    videos: int = 64,
    seed: int = 0,
    categories: int = 8,
    seconds: float = 10.0,
    fps: int = 25,
    size_px: int = 128,
    sample_rate_hz: int = 16000,
    ambiguous: bool = False,
    davis: int = 4,
    workers: int = 2,
    use_shared: bool = True,
    progress: bool = True,
    shared_dir: str | os.PathLike | None = None,
    max_distractors: int = 2,
    davis_frames: int = 50,
) -> dict:
    """Generate the synthetic world under ``out_dir`` (see the module docstring for the layout).

    Args:
        videos: number of MP4s.
        categories: how many sounding categories (real pairs from the shared folder first).
        seconds, fps, size_px, sample_rate_hz: each video's duration, frame rate, square size, audio rate.
        ambiguous: distractors are silent objects of *sounding* categories (other than the label),
            instead of objects of never-sounding categories.
        davis: number of DAVIS-layout mask sequences of ``davis_frames`` frames each.
        workers: processes (<= 1: in this process); the output does not depend on it.
        use_shared: use the real photos and sounds of ``shared_dir`` (default ../shared/data) when present.
        max_distractors: each video has 1..max_distractors silent objects.

    Returns:
        The JSON-ready summary also written to ``out_dir/world.json``, plus ``elapsed_sec`` and
        ``videos_per_sec`` (not written, so world.json is identical for a seed).

    Raises:
        ValueError: on invalid parameters.
    """
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    if fps < 1 or seconds <= 0 or seconds * fps < 1:
        raise ValueError(f"need fps >= 1 and seconds * fps >= 1, got seconds={seconds}, fps={fps}")
    if size_px < 16 or size_px % 2:
        raise ValueError(f"size_px must be even and >= 16 (H.264 yuv420p), got {size_px}")
    if sample_rate_hz < 8000:
        raise ValueError(f"sample_rate_hz must be >= 8000, got {sample_rate_hz}")
    if max_distractors < 1 or davis < 0 or davis_frames < 1:
        raise ValueError("need max_distractors >= 1, davis >= 0, davis_frames >= 1")
    started = time.perf_counter()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    shared = _resolve_shared(use_shared, shared_dir)
    sounding, silent = world_categories(categories=categories, use_shared=use_shared, shared_dir=shared_dir)
    load_assets(sounding + silent, max(16, int(round(size_px * _SPRITE_SCALE * 2))), sample_rate_hz)
    spec = _WorldSpec(str(out), int(seed), sounding, silent, float(seconds), int(fps), int(size_px), int(sample_rate_hz), bool(ambiguous), int(max_distractors), int(davis_frames))

    from tqdm.auto import tqdm

    with tqdm(total=videos + davis, desc="synth", unit="clip", disable=not progress) as bar:
        tasks = [("davis", i) for i in range(davis)] + [("video", i) for i in range(videos)]
        done = _run(tasks, spec, workers, bar)
    rows = [done[("video", i)] for i in range(videos)]
    seqs = [done[("davis", i)] for i in range(davis)]

    splits = _split(int(seed), videos)
    split_of = {i: name for name, idx in splits.items() for i in idx}
    _write_csv(out / "labels.csv", rows)
    for name, idx in splits.items():
        _write_csv(out / "splits" / f"{name}.csv", [rows[i] for i in idx], prefix="../")
    boxes = [{"file": r["path"], "class": r["label"], "bbox": [b["bbox"]], "time_sec": b["time_sec"]} for r in rows for b in r["boxes"]]
    (out / "boxes.json").write_text(json.dumps(boxes))
    if davis:
        sets = out / "davis" / "ImageSets" / "2017"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / "val.txt").write_text("".join(s["sequence"] + "\n" for s in seqs))

    summary = {
        "format_version": FORMAT_VERSION,
        "parameters": {
            "videos": videos,
            "seed": seed,
            "categories": categories,
            "seconds": seconds,
            "fps": fps,
            "size_px": size_px,
            "sample_rate_hz": sample_rate_hz,
            "ambiguous": ambiguous,
            "davis": davis,
            "davis_frames": davis_frames,
            "max_distractors": max_distractors,
            "use_shared": use_shared,
            "shared_dir": str(shared) if shared is not None else None,
        },
        "categories": [c.summary() for c in sounding + silent],
        "sounding_categories": [c.name for c in sounding],
        "counts": {"videos": videos, "boxes": len(boxes), "davis_sequences": len(seqs), **{k: len(v) for k, v in splits.items()}},
        "files": {"labels": "labels.csv", "boxes": "boxes.json", "splits": "splits", "davis": "davis" if davis else None},
        "videos": [{k: v for k, v in r.items() if k != "boxes"} | {"split": split_of[r["index"]]} for r in rows],
        "davis": seqs,
    }
    (out / "world.json").write_text(json.dumps(summary, indent=1))
    elapsed = time.perf_counter() - started
    return summary | {"elapsed_sec": round(elapsed, 3), "videos_per_sec": round(videos / elapsed, 3)}
