"""Mask overlays: object masks blended over frames, as a PNG strip or an MP4.

Colours are the DAVIS palette (object id i → palette colour i); boundaries are drawn solid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from avlearn.data.davis import DAVIS_PALETTE
from avlearn.eval.davis import seg2bmap

_PALETTE = np.array(DAVIS_PALETTE, np.uint8).reshape(-1, 3)


def overlay_mask(frame: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 frame + (H, W) ids → (H, W, 3) uint8 with objects tinted and outlined."""
    frame = np.asarray(frame, np.uint8)
    mask = np.asarray(mask)
    if frame.shape[:2] != mask.shape:
        raise ValueError(f"frame {frame.shape[:2]} and mask {mask.shape} sizes differ")
    out = frame.astype(np.float32)
    for obj in np.unique(mask):
        if obj == 0:
            continue
        sel = mask == obj
        colour = _PALETTE[int(obj) % 256].astype(np.float32)
        out[sel] = (1 - alpha) * out[sel] + alpha * colour
        out[seg2bmap(sel)] = colour
    return out.clip(0, 255).astype(np.uint8)


def overlay_strip(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, every: int = 1, max_frames: int = 8, height_px: int = 160) -> np.ndarray:
    """Overlays of up to ``max_frames`` frames side by side, each resized to ``height_px``: (height_px, W', 3) uint8."""
    from PIL import Image

    picks = list(range(0, len(frames), max(1, every)))[:max_frames]
    if not picks:
        raise ValueError("no frames")
    tiles = []
    for i in picks:
        im = Image.fromarray(overlay_mask(frames[i], masks[i]))
        w = max(1, round(im.width * height_px / im.height))
        tiles.append(np.asarray(im.resize((w, height_px), Image.BILINEAR)))
    return np.concatenate(tiles, axis=1)


def save_overlay(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], path: str | Path, *, fps: float = 10.0) -> Path:
    """Write overlays to ``path``: a PNG strip (.png) or an H.264 video (.mp4, via avlearn.media.writer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        from PIL import Image

        Image.fromarray(overlay_strip(frames, masks, every=max(1, len(frames) // 8))).save(path)
        return path
    if path.suffix.lower() in (".mp4", ".mkv", ".mov"):
        from avlearn.media.writer import write_video

        def gen() -> Iterable[np.ndarray]:
            for f, m in zip(frames, masks):
                o = overlay_mask(f, m)
                yield o[: o.shape[0] // 2 * 2, : o.shape[1] // 2 * 2]  # yuv420p needs even sizes

        write_video(path, gen(), fps)
        return path
    raise ValueError(f"overlay must be a .png or .mp4 path, got {path}")


def overlay_from_dirs(frames_dir: str | Path | None, video: str | Path | None, masks_dir: str | Path, path: str | Path) -> Path:
    """Overlay the PNG masks of ``masks_dir`` (sorted) on the frames of a folder or a video."""
    from avlearn.data.davis import read_mask
    from avlearn.track import iter_folder_frames, iter_video_frames

    masks = [read_mask(p) for p in sorted(Path(masks_dir).glob("*.png"))]
    it = iter_folder_frames(frames_dir) if frames_dir is not None else iter_video_frames(video)  # type: ignore[arg-type]
    frames = [f for f, _ in zip(it, masks)]
    return save_overlay(frames, masks[: len(frames)], path)
