"""The DAVIS layout: sequences of frames and palette-PNG annotations, read and written.

Layout: ``ROOT/JPEGImages/<res>/<seq>/00000.jpg`` and ``ROOT/Annotations/<res>/<seq>/00000.png``.
Annotations are palette ("P") PNGs whose pixel values are object ids (0 = background);
DAVIS-2016 binary masks (mode "L", values 0/255) are read as object 1. The J and F metrics
are ``avlearn.eval.davis``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class DavisLayoutError(ValueError):
    """A folder does not follow the DAVIS layout, or masks and frames do not match."""


def davis_palette(num_colors: int = 256) -> list[int]:
    """The DAVIS / PASCAL-VOC colour map as a flat [r0, g0, b0, r1, ...] list of 3*256 ints."""
    palette: list[int] = []
    for i in range(num_colors):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


DAVIS_PALETTE = davis_palette()
VOID_LABEL = 255  # "void" pixels in DAVIS annotations (object borders), scored as background


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) uint8 object ids from a DAVIS annotation PNG (palette, void 255 → 0; or binary 0/255 grayscale → 0/1)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode == "P":
            mask = np.array(im, dtype=np.uint8)
            mask[mask == VOID_LABEL] = 0  # void counts as background, as in the DAVIS toolkit
            return mask
        if im.mode in ("L", "1", "I", "I;16"):
            arr = np.array(im.convert("L"), dtype=np.uint8)
            values = np.unique(arr)
            if set(values.tolist()) <= {0, 255}:  # DAVIS-2016 binary masks
                return (arr > 0).astype(np.uint8)
            return arr
        if im.mode in ("RGB", "RGBA"):  # colour-coded masks: map colours to palette ids
            rgb = np.array(im.convert("RGB"), dtype=np.uint8)
            pal = np.array(DAVIS_PALETTE, np.uint8).reshape(-1, 3)
            out = np.zeros(rgb.shape[:2], np.uint8)
            for idx, colour in enumerate(pal[1:], start=1):
                out[np.all(rgb == colour, axis=-1)] = idx
            return out
        raise DavisLayoutError(f"{path}: unsupported mask image mode {im.mode!r}")


def write_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write (H, W) object ids as a DAVIS palette PNG; returns the path."""
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError(f"expected (H, W) object ids in [0, 255], got shape {mask.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(DAVIS_PALETTE)
    im.save(path)
    return path


def read_frame(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)


def list_sequences(root: str | Path, resolution: str = "480p") -> list[str]:
    """Names of the sequences under ``ROOT/JPEGImages/<resolution>``, sorted."""
    base = Path(root) / "JPEGImages" / resolution
    if not base.is_dir():
        raise DavisLayoutError(f"{root}: no JPEGImages/{resolution} folder (not a DAVIS root)")
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def frame_paths(root: str | Path, sequence: str, resolution: str = "480p") -> list[Path]:
    """Sorted frame image paths of one sequence."""
    seq_dir = Path(root) / "JPEGImages" / resolution / sequence
    paths = sorted(p for p in seq_dir.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise DavisLayoutError(f"{seq_dir}: no frames")
    return paths


def mask_paths(root: str | Path, sequence: str, resolution: str = "480p") -> list[Path]:
    """Sorted annotation PNG paths of one sequence."""
    seq_dir = Path(root) / "Annotations" / resolution / sequence
    paths = sorted(seq_dir.glob("*.png"))
    if not paths:
        raise DavisLayoutError(f"{seq_dir}: no annotation PNGs")
    return paths


def load_sequence(root: str | Path, sequence: str, resolution: str = "480p") -> tuple[np.ndarray, list[np.ndarray]]:
    """Frames (N, H, W, 3) uint8 and ground-truth masks (N of (H, W) uint8) of one sequence.

    Raises DavisLayoutError when the frame and mask names do not line up.
    """
    fps = frame_paths(root, sequence, resolution)
    mps = mask_paths(root, sequence, resolution)
    if [p.stem for p in fps] != [p.stem for p in mps]:
        raise DavisLayoutError(f"{sequence}: frame names and annotation names differ")
    frames = np.stack([read_frame(p) for p in fps])
    masks = [read_mask(p) for p in mps]
    if any(m.shape != frames.shape[1:3] for m in masks):
        raise DavisLayoutError(f"{sequence}: mask size differs from frame size {frames.shape[1:3]}")
    return frames, masks


def read_masks_dir(folder: str | Path, names: Sequence[str]) -> list[np.ndarray]:
    """Masks ``folder/<name>.png`` for each name (a results folder in the DAVIS layout)."""
    out = []
    for n in names:
        p = Path(folder) / f"{n}.png"
        if not p.is_file():
            raise DavisLayoutError(f"{p}: missing predicted mask")
        out.append(read_mask(p))
    return out
