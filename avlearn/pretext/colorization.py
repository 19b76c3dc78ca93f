"""Clip sampler for video colorization: short clips of T frames, references first, target last.

Sources are raw videos (decoded with :mod:`avlearn.media` at ``frame_step_sec``
spacing, on each video's frame grid) and folders of image frames (a DAVIS root's
``JPEGImages/<res>/<seq>/`` or any folder of JPEG/PNG frames), treated as raw video.
Each sequence is decoded once, resized so its short side is ``decode_short_px``,
and kept in memory as uint8; a clip is T consecutive frames of a sequence, randomly
cropped (one crop for the whole clip) to ``size_px`` and optionally mirrored.

The decoded frames are small (about 160 x 284 x 3 bytes each), which suits the
CPU-scale training of the ``small`` preset. Archives too large to hold are prepared
once into frame shards (``avlearn prepare --kind frames``) and streamed by
:class:`ColorizationStream`, a few shards in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avlearn.pretext.frame_stream import SequenceStream

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class FrameSequence:
    """One decoded sequence.

    Attributes:
        name: where it came from (clip id or folder).
        frames: (N, H, W, 3) uint8 RGB.
        stride: frames between consecutive clip frames (1 for videos decoded at the clip step).
    """

    name: str
    frames: np.ndarray
    stride: int = 1

    def num_clips(self, num_frames: int) -> int:
        return max(0, len(self.frames) - (num_frames - 1) * self.stride)


def _resize_short(frame: np.ndarray, short_px: int) -> np.ndarray:
    from PIL import Image

    h, w = frame.shape[:2]
    s = short_px / min(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def _short_side_size(height_px: int, width_px: int, short_px: int) -> tuple[int, int]:
    s = short_px / min(height_px, width_px)
    return max(2, round(height_px * s)), max(2, round(width_px * s))


def decode_video(
    path: str, *, frame_step_sec: float, short_px: int, start_sec: float = 0.0, duration_sec: float | None = None, max_frames: int = 300
) -> np.ndarray:
    """Frames of a video every ``frame_step_sec`` (on its frame grid), short side ``short_px``: (N, H, W, 3) uint8.

    Raises:
        avlearn.media.MediaError (or a subclass) for unreadable media.
    """
    from avlearn.media import NoVideoStream, probe, read_frames

    info = probe(path)
    if not info.has_video or not info.height_px or not info.width_px:
        raise NoVideoStream(str(path), "no video stream")
    end = info.duration_sec if duration_sec is None else min(info.duration_sec, start_sec + duration_sec)
    frame_dur = 1.0 / info.fps if info.fps else 0.04
    times = np.arange(start_sec, max(start_sec, end - frame_dur) + 1e-9, frame_step_sec)[:max_frames]
    if len(times) == 0:
        return np.zeros((0, 1, 1, 3), np.uint8)
    size = _short_side_size(info.height_px, info.width_px, short_px)
    return read_frames(path, times.tolist(), size).images


def decode_frame_folder(folder: str | Path, *, short_px: int, max_frames: int = 300) -> np.ndarray:
    """All image frames of a folder (sorted by name), short side ``short_px``: (N, H, W, 3) uint8."""
    from PIL import Image

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:max_frames]
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(_resize_short(np.asarray(im.convert("RGB")), short_px))
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def frame_folders(root: str | Path) -> list[Path]:
    """Folders of image frames under ``root``: a DAVIS root's JPEGImages/<res>/<seq>, or ``root`` itself."""
    root = Path(root)
    if (root / "JPEGImages").is_dir():
        return sorted(p for p in (root / "JPEGImages").glob("*/*") if p.is_dir())
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir()):
        return [root]
    return []


def load_sequences(
    data: str,
    *,
    frame_step_sec: float,
    short_px: int,
    folder_fps: float = 24.0,
    max_frames: int = 300,
    min_frames: int = 2,
) -> list[FrameSequence]:
    """Decode every sequence of a data spec; bad files are logged and skipped.

    Args:
        data: one or more specs joined by ","; each is a DAVIS root or a folder of image
            frames (treated as raw video at ``folder_fps``), or anything
            :func:`avlearn.data.sources.load_source` reads (video folder, manifest, ...).
        frame_step_sec: time between clip frames.
        short_px: decoded short side.

    Raises:
        FileNotFoundError: a spec does not exist.
    """
    from avlearn.media import MediaError

    seqs: list[FrameSequence] = []
    for spec in [s.strip() for s in str(data).split(",") if s.strip()]:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"data source {spec!r} does not exist")
        folders = frame_folders(path) if path.is_dir() else []
        if folders:
            stride = max(1, round(frame_step_sec * folder_fps))
            for f in folders:
                frames = decode_frame_folder(f, short_px=short_px, max_frames=max_frames * stride)
                if len(frames) >= min_frames:
                    seqs.append(FrameSequence(str(f), frames, stride))
            continue
        from avlearn.data.sources import load_source

        source = load_source(spec)
        for span in source.spans:
            try:
                frames = decode_video(
                    span.path, frame_step_sec=frame_step_sec, short_px=short_px, start_sec=span.start_sec, duration_sec=span.duration_sec, max_frames=max_frames
                )
            except MediaError as exc:
                log.warning("skipping %s: %s", span.path, exc)
                continue
            if len(frames) >= min_frames:
                seqs.append(FrameSequence(span.clip_id, frames, 1))
    return seqs


def split_sequences(seqs: Sequence[FrameSequence], split: str, *, val_fraction: float = 0.1, num_frames: int = 4) -> list[FrameSequence]:
    """Time split: the last ``val_fraction`` of each sequence's frames are "val", the rest "train".

    A sequence too short to give a validation clip stays whole in "train".
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    out = []
    for s in seqs:
        need = (num_frames - 1) * s.stride + 1
        n_val = max(need, int(round(len(s.frames) * val_fraction)))
        if len(s.frames) - n_val < need:
            if split == "train":
                out.append(s)
            continue
        part = s.frames[len(s.frames) - n_val :] if split == "val" else s.frames[: len(s.frames) - n_val]
        out.append(FrameSequence(s.name, part, s.stride))
    return out


def sample_ab(seqs: Sequence[FrameSequence], *, max_frames: int = 256, pool_px: int = 4, seed: int = 0) -> torch.Tensor:
    """ab values (N, 2) from up to ``max_frames`` frames spread over the sequences (average-pooled by ``pool_px``)."""
    from avlearn.color import uint8_to_lab

    rng = np.random.default_rng(seed)
    index = [(i, j) for i, s in enumerate(seqs) for j in range(len(s.frames))]
    if not index:
        raise ValueError("no frames to fit colour clusters on")
    pick = rng.choice(len(index), min(max_frames, len(index)), replace=False)
    out = []
    for k in pick:
        i, j = index[k]
        lab = uint8_to_lab(torch.from_numpy(seqs[i].frames[j]))
        ab = torch.nn.functional.avg_pool2d(lab[None, 1:], pool_px)[0]
        out.append(ab.reshape(2, -1).T)
    return torch.cat(out)


def crop_clip(clip: np.ndarray, size_px: tuple[int, int], draw: Callable[[int], int] | None) -> dict[str, torch.Tensor]:
    """(T, H, W, 3) uint8 → {"frames": (T, ch, cw, 3)}: a random crop and flip when ``draw`` (n → an int in [0, n)) is given, else the centre.

    Draws in the order y0, x0, flip.
    """
    h, w = clip.shape[1:3]
    ch, cw = size_px
    if draw is not None:
        y0, x0, flip = draw(h - ch + 1), draw(w - cw + 1), bool(draw(2))
    else:
        y0, x0, flip = (h - ch) // 2, (w - cw) // 2, False
    clip = clip[:, y0 : y0 + ch, x0 : x0 + cw]
    if flip:
        clip = clip[:, :, ::-1]
    return {"frames": torch.from_numpy(np.ascontiguousarray(clip))}


class ColorizationClips(Dataset):
    """Map-style dataset of clips: item → {"frames": (T, H, W, 3) uint8}, the last frame is the target.

    Args:
        sequences: decoded sequences (at least ``size_px`` large after decoding).
        num_frames: T = references + 1.
        size_px: (H, W) crop.
        augment: random crop + horizontal flip (else a centre crop); drawn from torch's RNG, which
            the trainer seeds per rank and per DataLoader worker.
    """

    def __init__(self, sequences: Sequence[FrameSequence], *, num_frames: int, size_px: tuple[int, int], augment: bool = True) -> None:
        self.sequences = [s for s in sequences if s.num_clips(num_frames) > 0]
        self.num_frames = num_frames
        self.size_px = (int(size_px[0]), int(size_px[1]))
        self.augment = augment
        for s in self.sequences:
            h, w = s.frames.shape[1:3]
            if h < self.size_px[0] or w < self.size_px[1]:
                raise ValueError(f"{s.name}: decoded frames {h}x{w} are smaller than the crop {self.size_px}")
        counts = [s.num_clips(num_frames) for s in self.sequences]
        self._offsets = np.cumsum([0] + counts)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        seq = self.sequences[k]
        start = index - int(self._offsets[k])
        clip = seq.frames[start : start + (self.num_frames - 1) * seq.stride + 1 : seq.stride]
        return crop_clip(clip, self.size_px, (lambda n: int(torch.randint(0, n, ()))) if self.augment else None)


# ---------------------------------------------------------------- streaming from frame shards


def clip_stride(step_sec: float, frame_step_sec: float) -> int:
    """Stored frames between clip frames for a wanted ``frame_step_sec``: at least 1."""
    return max(1, int(round(frame_step_sec / step_sec)))


def split_part(n: int, stride: int, split: str, *, val_fraction: float, num_frames: int) -> tuple[int, int] | None:
    """The frames [lo, hi) of a sequence of ``n`` frames in ``split`` (the time split of :func:`split_sequences`), None when it has no clip."""
    need = (num_frames - 1) * stride + 1
    n_val = max(need, int(round(n * val_fraction)))
    if n - n_val < need:
        return (0, n) if split == "train" and n >= need else None
    return (n - n_val, n) if split == "val" else (0, n - n_val)


class ColorizationStream(SequenceStream):
    """Clips {"frames": (T, H, W, 3) uint8, "seq"} streamed from a frame shard dir: ``per_sequence`` clips of each sequence per epoch.

    Frames are read at short side ``short_px``; clip frames are ``clip_stride(step_sec, frame_step_sec)`` stored
    frames apart; ``split`` takes the time split of each sequence (:func:`split_part`). Clip starts, crops and
    flips come from ``(seed, epoch, sequence, k)``: distinct starts while a sequence has enough of them.
    """

    def __init__(
        self, shard_dir: str, refs: list, *, split: str, num_frames: int, size_px: tuple[int, int], frame_step_sec: float, short_px: int,
        val_fraction: float = 0.1, max_frames: int = 300, augment: bool = True, **stream: Any,
    ) -> None:  # fmt: skip
        super().__init__(shard_dir, refs, **stream)
        self.split, self.num_frames, self.size_px = split, int(num_frames), (int(size_px[0]), int(size_px[1]))
        self.frame_step_sec, self.short_px, self.val_fraction, self.max_frames, self.augment = frame_step_sec, int(short_px), val_fraction, max_frames, augment

    def read_kwargs(self) -> dict[str, Any]:
        return {"short_px": self.short_px}

    def load(self, ref: Any, frames: np.ndarray, times_sec: np.ndarray, meta: dict) -> FrameSequence:
        stride = clip_stride(ref.step_sec, self.frame_step_sec)
        frames = frames[: self.max_frames * stride]
        part = split_part(len(frames), stride, self.split, val_fraction=self.val_fraction, num_frames=self.num_frames)
        if part is None:  # the planned length was wrong: the done record disagrees with the tar
            raise ValueError(f"{ref.clip_id}: {len(frames)} stored frames give no {self.split} clip")
        h, w = frames.shape[1:3]
        if h < self.size_px[0] or w < self.size_px[1]:
            raise ValueError(f"{ref.clip_id}: frames {h}x{w} are smaller than the crop {self.size_px}; prepare with a larger --short-px or set decode_short_px")
        return FrameSequence(ref.clip_id, frames[part[0] : part[1]], stride)

    def sample(self, window: list[FrameSequence], j: int, k: int, uid: int) -> dict[str, torch.Tensor]:
        seq = window[j]
        n = seq.num_clips(self.num_frames)
        rng = np.random.default_rng([self.seed, self.epoch, uid, k])
        if self.augment:  # k-th start of a per-(epoch, sequence) permutation: distinct while k < n
            start = int(np.random.default_rng([self.seed, self.epoch, uid, 5]).permutation(n)[k % n])
        else:
            start = int(round((k + 0.5) * n / self.per_sequence - 0.5)) % n
        clip = seq.frames[start : start + (self.num_frames - 1) * seq.stride + 1 : seq.stride]
        return crop_clip(clip, self.size_px, (lambda n: int(rng.integers(0, n))) if self.augment else None)


def shard_clip_refs(src: str, split: str, *, frame_step_sec: float, num_frames: int, val_fraction: float, max_frames: int) -> list:
    """The stored sequences of a frame shard dir that give a clip in ``split`` (planned from the done records)."""
    from avlearn.data.frame_shards import sequence_refs

    out = []
    for r in sequence_refs(src):
        stride = clip_stride(r.step_sec, frame_step_sec)
        if split_part(min(r.frames, max_frames * stride), stride, split, val_fraction=val_fraction, num_frames=num_frames) is not None:
            out.append(r)
    return out


def shard_fit_sequences(
    src: str, refs: list, *, seed: int, max_shards: int, short_px: int, frame_step_sec: float, num_frames: int, val_fraction: float
) -> list[FrameSequence]:
    """Training parts of the sequences of up to ``max_shards`` shards (chosen from ``seed``): the frames colour clusters are fitted on."""
    from avlearn.data.frame_shards import read_sequences

    shards = sorted({r.shard for r in refs})
    pick = [shards[i] for i in np.random.default_rng([seed, 23]).permutation(len(shards))[:max_shards]]
    by_id = {r.clip_id: r for r in refs}
    out = []
    for shard in pick:
        for clip_id, frames, _, _ in read_sequences(src, shard, {r.clip_id for r in refs if r.shard == shard}, short_px=short_px):
            stride = clip_stride(by_id[clip_id].step_sec, frame_step_sec)
            part = split_part(len(frames), stride, "train", val_fraction=val_fraction, num_frames=num_frames)
            if part is not None:
                out.append(FrameSequence(clip_id, frames[part[0] : part[1]], stride))
    return out
