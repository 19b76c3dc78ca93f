"""The synthetic audio-visual world (``avlearn synth``): H.264 + AAC MP4s with full ground truth.

Categories are families of instances (``_synth_assets``): each instance has its own look
(body plan parts and proportions, colour within the family's range, texture, typical scale)
and its own sound (pitch over more than an octave, timbre, envelope, event rate, noise
colour) around the family's character. Some instances of every sounding category are held
out of training, so ``test`` measures recognition of unseen members of a family rather than
template matching; ``instances=1`` gives one template per category (the template-matching world).

Each video shows ONE sounding object and one or more silent distractors moving on known
paths (constant velocity, acceleration, gravity bounces with energy loss, sliding in from
an edge with friction; spinning and growing or shrinking), in a random depth order over a
background of a random kind. Sounding objects range from small to over half the frame. The
soundtrack is the sounding instance's sound (random excerpt, gain and on/off events) over
low noise.

Layout written under ``out_dir``::

    videos/v00000.mp4 ...          H.264 + AAC, size_px x size_px, fps, sample_rate_hz
    labels.csv                     path,label,visible,instance (path relative to out_dir; instance "<category>/<k>")
    boxes.json                     VGG-SS style: [{"file", "class", "bbox": [[x0,y0,x1,y1]], "time_sec"}], one per second
    splits/{train,val,test,test_seen}.csv     same columns, paths relative to splits/ (../videos/...);
                                   test = unseen instances, test_seen = new videos of training instances
    splits/test_unseen_categories.csv         only with heldout_categories > 0
    davis/JPEGImages/480p/<seq>/00000.jpg, davis/Annotations/480p/<seq>/00000.png,
    davis/ImageSets/2017/val.txt   DAVIS-2017 layout, palette PNG masks (0 = background, ids 1..K)
    world.json                     parameters, categories with every instance's parameters, held-out
                                   instances and categories, per-video and per-sequence metadata

Everything is a function of ``seed``: video i draws from an RNG seeded by (seed, i), so the
output does not depend on ``workers``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from avlearn.data._synth_assets import Category, available_categories, default_shared_dir, load_clips, make_instances
from avlearn.data._synth_looks import look_sprite
from avlearn.data._synth_run import run_tasks, seeded_rng, write_csv
from avlearn.data._synth_scene import SceneObject, composite, make_background, make_object, make_soundtrack
from avlearn.data._synth_splits import SplitPlan, plan_splits
from avlearn.data.davis import write_mask

FORMAT_VERSION = 2
_STREAM_VIDEO, _STREAM_DAVIS = 1, 2
COLUMNS = ("path", "label", "visible", "instance")

__all__ = ["make_world", "world_categories", "FORMAT_VERSION", "COLUMNS"]


@dataclass
class _WorldSpec:
    """Everything a worker needs to draw any video of the world (picklable); ``sprites`` caches looks per process."""

    out_dir: str
    seed: int
    sounding: list[Category]
    silent: list[Category]
    plan: SplitPlan
    shared_dir: Path | None
    seconds: float
    fps: int
    size_px: int
    sample_rate_hz: int
    ambiguous: bool
    max_distractors: int
    davis_frames: int
    sprites: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    @property
    def all(self) -> list[Category]:
        return self.sounding + self.silent

    def sprite(self, category: int, instance: int) -> np.ndarray:
        key = (category, instance)
        if key not in self.sprites:
            look = self.all[category].instances[instance].look
            self.sprites[key] = look_sprite(look, max(16, self.size_px), self.shared_dir)
        return self.sprites[key]


def world_categories(*, categories: int = 8, use_shared: bool = True, shared_dir: str | os.PathLike | None = None) -> tuple[list[Category], list[Category]]:
    """The (sounding, silent) categories a world would use, without instances.

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


def _object(spec: _WorldSpec, rng: np.random.Generator, category: int, instance: int, *, sounding: bool, num_frames: int, allow_offscreen: bool) -> SceneObject:
    cat = spec.all[category]
    sprite = spec.sprite(category, instance)
    return make_object(
        cat,
        cat.instances[instance],
        sprite,
        sounding=sounding,
        rng=rng,
        size_px=spec.size_px,
        num_frames=num_frames,
        fps=spec.fps,
        allow_offscreen=allow_offscreen,
    )


def _scene(
    spec: _WorldSpec, rng: np.random.Generator, label: int, instance: int, split: str | None, num_frames: int, *, allow_offscreen: bool
) -> tuple[list[SceneObject], list[int], np.ndarray, str]:
    """Objects (the sounding one first), their back-to-front order, the (H, W, 3) float32 background and its kind.

    Distractors of sounding categories (``ambiguous``) show only instances and categories allowed in
    ``split`` (None: any); silent categories are not split.
    """
    background, background_kind = make_background(rng, spec.size_px)
    n_dis = int(rng.integers(1, spec.max_distractors + 1))
    k = len(spec.sounding)
    if spec.ambiguous:
        held = spec.plan.heldout_categories if split not in (None, "test_unseen_categories") else []
        pool = [i for i in range(k) if i != label and i not in held] or [label]
    else:
        pool = list(range(k, k + len(spec.silent)))
    common = dict(num_frames=num_frames, allow_offscreen=allow_offscreen)
    objects = [_object(spec, rng, label, instance, sounding=True, **common)]
    for d in rng.choice(pool, size=n_dis, replace=n_dis > len(pool)):
        d = int(d)
        options = spec.plan.allowed(d, split) if d < k and split is not None else range(spec.plan.instances)
        objects.append(_object(spec, rng, d, int(rng.choice(list(options))), sounding=False, **common))
    order = [int(i) for i in rng.permutation(len(objects))]
    return objects, order, background, background_kind


def _video_name(index: int) -> str:
    return f"videos/v{index:05d}.mp4"


def _make_video(spec: _WorldSpec, index: int) -> dict:
    """Render, encode and describe video ``index`` of the world."""
    from avlearn.media.writer import write_video

    rng = seeded_rng(spec.seed, _STREAM_VIDEO, index)
    num_frames = max(1, int(round(spec.seconds * spec.fps)))
    slot = spec.plan.slots[index]
    objects, order, background, background_kind = _scene(spec, rng, slot.category, slot.instance, slot.split, num_frames, allow_offscreen=True)
    category = spec.sounding[slot.category]
    instance = category.instances[slot.instance]
    audio, sound_info = make_soundtrack(category, instance, rng, seconds=num_frames / spec.fps, sample_rate_hz=spec.sample_rate_hz)
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
    return {
        "index": index,
        "path": rel,
        "label": category.name,
        "visible": sorted({o.label for o in objects}),
        "instance": instance.id,
        "split": slot.split,
        "background": background_kind,
        "order_back_to_front": order,
        "objects": [o.params for o in objects],
        "sound": sound_info,
        "boxes": boxes,
    }


def _make_davis(spec: _WorldSpec, seq_index: int) -> dict:
    """Render one DAVIS-layout sequence (JPEG frames + palette PNG masks) of any category and instance."""
    rng = seeded_rng(spec.seed, _STREAM_DAVIS, seq_index)
    label = int(rng.integers(len(spec.sounding)))
    objects, order, background, _ = _scene(spec, rng, label, int(rng.integers(spec.plan.instances)), None, spec.davis_frames, allow_offscreen=False)
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


def _run_task(spec: _WorldSpec, task: tuple[str, int]) -> dict:
    kind, index = task
    return _make_video(spec, index) if kind == "video" else _make_davis(spec, index)


def make_world(
    out_dir: str | os.PathLike,
    *,
    videos: int = 64,
    seed: int = 0,
    categories: int = 8,
    instances: int = 24,
    heldout_instances: float = 0.25,
    heldout_categories: int = 0,
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
        instances: instances per category (1: one template per category, the template-matching world).
        heldout_instances: fraction of each sounding category's instances kept out of training (split ``test``).
        heldout_categories: sounding categories seen only in split ``test_unseen_categories``.
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
    if videos < 1 or instances < 1:
        raise ValueError(f"videos and instances must be >= 1, got {videos}, {instances}")
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
    plan = plan_splits(int(seed), videos, [c.name for c in sounding], instances, heldout_instances, heldout_categories)
    for c in sounding + silent:
        make_instances(c, instances, int(seed))
    load_clips(sounding, sample_rate_hz)
    spec = _WorldSpec(
        str(out),
        int(seed),
        sounding,
        silent,
        plan,
        shared,
        float(seconds),
        int(fps),
        int(size_px),
        int(sample_rate_hz),
        bool(ambiguous),
        int(max_distractors),
        int(davis_frames),
    )

    tasks = [("davis", i) for i in range(davis)] + [("video", i) for i in range(videos)]
    done = run_tasks(_run_task, tasks, spec, workers, desc="synth", progress=progress)
    seqs, rows = done[:davis], done[davis:]

    splits = plan.split_indices()
    write_csv(out / "labels.csv", rows, COLUMNS)
    for name, idx in splits.items():
        write_csv(out / "splits" / f"{name}.csv", [rows[i] for i in idx], COLUMNS, prefix="../")
    boxes = [{"file": r["path"], "class": r["label"], "bbox": [b["bbox"]], "time_sec": b["time_sec"]} for r in rows for b in r["boxes"]]
    (out / "boxes.json").write_text(json.dumps(boxes))
    if davis:
        sets = out / "davis" / "ImageSets" / "2017"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / "val.txt").write_text("".join(s["sequence"] + "\n" for s in seqs))

    summary = {
        "format_version": FORMAT_VERSION,
        "kind": "av",
        "parameters": {
            "videos": videos,
            "seed": seed,
            "categories": categories,
            "instances": instances,
            "heldout_instances": heldout_instances,
            "heldout_categories": heldout_categories,
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
        "heldout_instances": [sounding[c].instances[i].id for c, held in enumerate(plan.heldout_instances) for i in held],
        "heldout_categories": [sounding[c].name for c in plan.heldout_categories],
        "counts": {"videos": videos, "boxes": len(boxes), "davis_sequences": len(seqs), **{k: len(v) for k, v in splits.items()}},
        "files": {"labels": "labels.csv", "boxes": "boxes.json", "splits": "splits", "davis": "davis" if davis else None},
        "videos": [{k: v for k, v in r.items() if k != "boxes"} for r in rows],
        "davis": seqs,
    }
    (out / "world.json").write_text(json.dumps(summary, indent=1))
    elapsed = time.perf_counter() - started
    return summary | {"elapsed_sec": round(elapsed, 3), "videos_per_sec": round(videos / elapsed, 3)}
