"""Frame-sequence shards (``avlearn prepare --kind frames``): each clip stored once, at training resolution.

A frame shard dir has the layout of a segment shard dir (``avlearn.data.shards``: ``prepare.json``,
``shard-NNNNNN.tar`` + ``.done.json``, ``errors.jsonl``; the same resume and error records), with
``params.kind == "frames"``. One WebDataset sample per clip, key ``segment_key(clip_id, 0)``::

    KEY.000000.jpg ... KEY.{T-1:06d}.jpg   the clip's frames in time order, short side ``short_px``
    KEY.json       clip_id, path, labels, visible, start_sec, times_sec (T,), native_fps,
                   step_frames (grid frames of the video between stored frames), height_px, width_px

Frames are taken on each video's own frame grid: every ``step_frames = round(native_fps / fps)``-th
grid frame (``fps`` 0: every frame), so distances in grid frames keep their meaning; repeats of a
variable-frame-rate file (two requested times snapping to one frame) are dropped, never stored twice.
Each done record's clip entries also carry ``frames``, ``step_frames`` and ``native_fps`` (so readers plan an epoch
without opening a tar).

Readers: :func:`sequence_refs` (the plan: every stored sequence, from the done records),
:func:`read_sequences` (decode the wanted sequences of one shard), :func:`split_epoch` (which
sequences a rank / DataLoader worker reads in an epoch).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.shards import decode_jpeg, encode_jpeg, iter_tar_samples, read_done_records, read_prepare_config, segment_key

FRAMES_KIND = "frames"


@dataclass(frozen=True)
class FrameShardParams:
    """Everything that decides the bytes of frame shards (stored in prepare.json's params).

    Attributes:
        fps: frames per second to keep (snapped to the video's grid: every round(native / fps)-th frame); 0 = every frame.
        short_px: short side of stored frames in px (aspect kept, even sizes); 0 = native.
        max_frames: at most this many frames per clip (None: all).
        clips_per_shard: clips per shard file.
    """

    kind: str = FRAMES_KIND
    fps: float = 8.0
    short_px: int = 128
    max_frames: int | None = None
    clips_per_shard: int = 50
    jpeg_quality: int = 90

    def validate(self) -> None:
        if self.kind != FRAMES_KIND:
            raise ValueError(f"kind must be {FRAMES_KIND!r}, got {self.kind!r}")
        if self.fps < 0 or self.short_px < 0:
            raise ValueError("fps and short_px must be >= 0 (0: native)")
        if self.max_frames is not None and self.max_frames < 2:
            raise ValueError("max_frames must be >= 2")
        if self.clips_per_shard < 1:
            raise ValueError("clips_per_shard must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")


def grid_step(native_fps: float, fps: float) -> int:
    """Grid frames between stored frames for a wanted ``fps`` (0: every frame): at least 1."""
    return 1 if fps <= 0 else max(1, int(round(native_fps / fps)))


def decode_frame_clip(span: dict, params: dict) -> list[dict[str, Any]]:
    """Decode and encode one clip into one WebDataset sample (runs inside safe_call's child).

    Returns:
        ``[{"__key__", "000000.jpg", ..., "json", "_clip": {frames, step_frames}}]`` (``_clip`` goes to the done record).

    Raises:
        MediaError subclasses: NoVideoStream, TooShort (fewer than 2 distinct frames), unreadable media.
    """
    from avlearn.data.spans import ClipSpan
    from avlearn.media import NoVideoStream, TooShort, probe, read_frames, short_side_size

    p = FrameShardParams(**params)
    clip = ClipSpan.from_dict(span)
    info = probe(clip.path)
    if not info.has_video:
        raise NoVideoStream(clip.path, "no video stream")
    native = float(info.fps or 25.0)
    step = grid_step(native, p.fps)
    end = info.duration_sec if clip.end_sec is None else min(clip.end_sec, info.duration_sec)
    n = int(math.floor((end - clip.start_sec) * native / step + 1e-6))
    if p.max_frames is not None:
        n = min(n, p.max_frames)
    times = clip.start_sec + (step / native) * np.arange(max(0, n))
    if len(times) < 2:
        raise TooShort(clip.path, f"fewer than 2 frames at {p.fps:g} fps (media lasts {info.duration_sec:.3f} s)")
    fr = read_frames(clip.path, times.tolist(), short_side_size(info.width_px, info.height_px, p.short_px))
    keep = np.concatenate([[True], np.diff(fr.times_sec) > 1e-9])  # a repeat is never stored as a new frame
    images, stamps = fr.images[keep], fr.times_sec[keep]
    if len(images) < 2:
        raise TooShort(clip.path, "fewer than 2 distinct frames")
    sample: dict[str, Any] = {"__key__": segment_key(clip.clip_id, 0)}
    for i, img in enumerate(images):
        sample[f"{i:06d}.jpg"] = encode_jpeg(img, p.jpeg_quality)
    meta = {
        "clip_id": clip.clip_id,
        "path": clip.path,
        "labels": list(clip.labels),
        "visible": list(clip.visible),
        "start_sec": clip.start_sec,
        "times_sec": [round(float(t), 6) for t in stamps],
        "native_fps": native,
        "step_frames": step,
        "height_px": int(images.shape[1]),
        "width_px": int(images.shape[2]),
    }
    sample["json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    sample["_clip"] = {"frames": len(images), "step_frames": step, "native_fps": native}
    return [sample]


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class SequenceRef:
    """One stored sequence, known from the done records (no tar opened).

    Attributes:
        uid: index in the sorted list of the dir's sequences (stable for a dir).
        shard: tar file name.
        clip_id: the clip.
        frames: stored frames.
        step_frames: grid frames between stored frames.
        native_fps: the video's frame rate.
    """

    uid: int
    shard: str
    clip_id: str
    frames: int
    step_frames: float
    native_fps: float = 25.0

    @property
    def step_sec(self) -> float:
        """Seconds between stored frames."""
        return self.step_frames / self.native_fps


@dataclass
class StoredSequence:
    """One decoded sequence: frames (T, H, W, 3) uint8, times_sec (T,), and its metadata."""

    ref: SequenceRef
    frames: np.ndarray
    times_sec: np.ndarray
    meta: dict


def is_frame_shard_dir(path: str | os.PathLike) -> bool:
    """True for a dir written by ``avlearn prepare --kind frames``."""
    from avlearn.data.sources import is_shard_dir

    return is_shard_dir(path) and read_prepare_config(path).get("params", {}).get("kind") == FRAMES_KIND


def sequence_refs(shard_dir: str | os.PathLike) -> list[SequenceRef]:
    """Every decoded sequence of a frame shard dir in (shard, clip id) order.

    Raises:
        ValueError: ``shard_dir`` is not a frame shard dir.
    """
    if not is_frame_shard_dir(shard_dir):
        raise ValueError(f"{os.fspath(shard_dir)} is not a frame shard dir (avlearn prepare --kind frames)")
    refs: list[SequenceRef] = []
    for rec in read_done_records(shard_dir):
        for c in rec["clips"]:
            if c.get("segments", 0) > 0 and c.get("frames"):
                refs.append(SequenceRef(len(refs), rec["shard"], c["clip_id"], int(c["frames"]), float(c["step_frames"]), float(c.get("native_fps", 25.0))))
    return refs


def read_sequences(
    shard_dir: str | os.PathLike, shard: str, clip_ids: set[str] | None = None, *, size_px: tuple[int, int] | None = None, short_px: int | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """Decode the sequences of one shard (only ``clip_ids`` when given): (clip_id, frames (T, H, W, 3) uint8, times_sec (T,), meta).

    ``size_px`` (H, W) resizes every frame to that size; ``short_px`` resizes to that short side (aspect kept);
    neither: as stored. JPEGs of other clips are skipped undecoded.
    """
    for sample in iter_tar_samples(Path(shard_dir) / shard):
        meta = json.loads(sample["json"])
        if clip_ids is not None and meta["clip_id"] not in clip_ids:
            continue
        size = size_px
        if size is None and short_px:
            h, w = int(meta["height_px"]), int(meta["width_px"])
            s = short_px / min(h, w)
            size = (max(2, round(h * s)), max(2, round(w * s)))
        names = sorted(k for k in sample if k.endswith(".jpg"))
        frames = np.stack([decode_jpeg(sample[k], size) for k in names])
        yield meta["clip_id"], frames, np.asarray(meta["times_sec"], np.float64), meta


def split_epoch(refs: Sequence[SequenceRef], *, seed: int, epoch: int, rank: int, world_size: int, shuffle: bool = True) -> list[tuple[SequenceRef, int]]:
    """The sequences rank ``rank`` reads in ``epoch``: (ref, copy) pairs, in shard order.

    The shard order is permuted from ``(seed, epoch)`` (when ``shuffle``); the sequences, listed shard by
    shard, are cut into ``world_size`` contiguous parts, so a rank reads its own run of shards (a shard at
    a boundary is read by both neighbours, each decoding only its own clips). Every part has
    ``ceil(S / W)`` entries: a shorter part repeats its own first sequences (``copy`` 1, 2, ...), so
    ranks take equal steps; every sequence is read once per epoch, and at most W − 1 are read twice.
    """
    if not refs:
        return []
    shards = sorted({r.shard for r in refs})
    if shuffle:
        order = np.random.default_rng([int(seed), int(epoch), 1009]).permutation(len(shards))
        shards = [shards[i] for i in order]
    rank_of = {s: i for i, s in enumerate(shards)}
    flat = sorted(refs, key=lambda r: (rank_of[r.shard], r.uid))
    per = -(-len(flat) // world_size)
    bounds = [round(i * len(flat) / world_size) for i in range(world_size + 1)]
    own = flat[bounds[rank] : bounds[rank + 1]] or flat[rank % len(flat) : rank % len(flat) + 1]
    out = [(i, r, 0) for i, r in enumerate(own)]
    k = 0
    while len(out) < per:
        out.append((k % len(own), own[k % len(own)], 1 + k // len(own)))
        k += 1
    return [(r, copy) for _, r, copy in sorted(out, key=lambda x: (x[0], x[2]))]  # a repeat next to its original: same shard


def split_workers(items: Sequence[Any], worker: int, num_workers: int) -> list[Any]:
    """The contiguous part ``worker`` of ``num_workers`` of a rank's list (sizes differ by at most 1)."""
    bounds = [round(i * len(items) / num_workers) for i in range(num_workers + 1)]
    return list(items[bounds[worker] : bounds[worker + 1]])
