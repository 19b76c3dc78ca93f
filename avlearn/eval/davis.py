"""DAVIS video object segmentation: J (region IoU), F (boundary F-measure), layout and palette PNGs.

Definitions follow the DAVIS benchmark (Perazzi et al. 2016; the davis2017-evaluation
toolkit, BSD-3):

- J: the Jaccard index |A ∩ B| / |A ∪ B| of the predicted and ground-truth masks of one
  object in one frame; 1 when both are empty.
- F: the boundary F-measure. Each mask's boundary is the 1-pixel-wide map of
  ``seg2bmap`` (a pixel differs from its east, south or south-east neighbour). A
  predicted boundary pixel counts as matched when a ground-truth boundary pixel lies
  within ``ceil(0.008 * image diagonal)`` pixels (dilation by a disk), and vice versa;
  F = 2PR / (P + R). Empty-vs-empty scores 1; empty-vs-nonempty scores 0.

Scored frames (``scored_frames``), exactly the official toolkit's rule for the semi-supervised
task (davis2017-evaluation, ``davis2017/evaluation.py``: ``all_gt_masks[:, 1:-1]``): frames
1 … N − 2 of a sequence of N frames. The first frame is dropped (its mask is given) and so is
the last. A sequence needs at least 3 frames. Objects are ids 1 … max id of the first
ground-truth mask (``davis2017/davis.py``: ``num_objects = max(masks[0])``); the void label 255
is read as background, as the toolkit does.

Per sequence, each object's J and F are averaged over the scored frames; a sequence's score
is the mean over its objects, the overall score is the mean over all objects of all sequences
(the DAVIS-2017 convention; with one object per sequence it is the mean over sequences), and
J&F = (J + F) / 2.

Layout: ``ROOT/JPEGImages/<res>/<seq>/00000.jpg`` and ``ROOT/Annotations/<res>/<seq>/00000.png``.
Annotations are palette ("P") PNGs whose pixel values are object ids (0 = background, 255 =
void, read as 0); DAVIS-2016 binary masks (mode "L", values 0/255) are read as object 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal
VOID_LABEL = 255


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


# ---------------------------------------------------------------- metrics


def region_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """J: IoU of two binary masks (H, W); 1.0 when both are empty."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    union = np.logical_or(gt, pred).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(gt, pred).sum() / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary map (H, W) bool of a binary mask (D. Martin's seg2bmap, as in DAVIS).

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour; the boundary sits half a pixel towards the origin from the true edge.
    """
    seg = np.asarray(seg, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """Disk structuring element of ``radius`` px (x² + y² <= r²), like skimage.morphology.disk."""
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUNDARY_TOLERANCE) -> float:
    """F: boundary F-measure of two binary masks (H, W), DAVIS definition.

    Args:
        bound_th: match tolerance; < 1 is a fraction of the image diagonal, >= 1 pixels.
    """
    from scipy.ndimage import binary_dilation

    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    bound_px = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape))
    fg_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    disk = _disk(int(bound_px))
    fg_dil = binary_dilation(fg_b, structure=disk)
    gt_dil = binary_dilation(gt_b, structure=disk)
    precision = float((fg_b & gt_dil).sum()) / n_fg
    recall = float((gt_b & fg_dil).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass
class SequenceScore:
    """Scores of one sequence: per-object means over the evaluated frames."""

    name: str
    object_ids: list[int]
    j_per_object: list[float]
    f_per_object: list[float]

    @property
    def j(self) -> float:
        return float(np.mean(self.j_per_object)) if self.j_per_object else float("nan")

    @property
    def f(self) -> float:
        return float(np.mean(self.f_per_object)) if self.f_per_object else float("nan")

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def to_dict(self) -> dict:
        return {
            "J": self.j,
            "F": self.f,
            "J&F": self.jf,
            "objects": {str(o): {"J": j, "F": f} for o, j, f in zip(self.object_ids, self.j_per_object, self.f_per_object)},
        }


def scored_frames(num_frames: int) -> range:
    """Indices of the frames the official DAVIS toolkit scores (semi-supervised): 1 … N − 2, first and last dropped.

    Raises:
        DavisLayoutError: fewer than 3 frames (nothing would be scored).
    """
    if num_frames < 3:
        raise DavisLayoutError(f"a sequence needs at least 3 frames to be scored (the DAVIS toolkit scores frames 1 … N-2), got {num_frames}")
    return range(1, num_frames - 1)


def evaluate_sequence(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray], *, name: str = "") -> SequenceScore:
    """J and F of a predicted label sequence against the ground truth, on the frames the DAVIS toolkit scores.

    Args:
        gt_masks: N label maps (H, W) of object ids (0 = background), N >= 3.
        pred_masks: N label maps of the same shapes (frame 0 and N − 1 are not scored).

    Objects are the ids 1 … max of the first ground-truth frame (DAVIS semi-supervised).
    """
    if len(gt_masks) != len(pred_masks):
        raise DavisLayoutError(f"{name}: {len(gt_masks)} ground-truth masks but {len(pred_masks)} predictions")
    frames = scored_frames(len(gt_masks))
    ids = list(range(1, int(np.max(gt_masks[0])) + 1))
    js, fs = [], []
    for obj in ids:
        j_obj, f_obj = [], []
        for t in frames:
            g, p = gt_masks[t] == obj, pred_masks[t] == obj
            j_obj.append(region_iou(g, p))
            f_obj.append(boundary_f(g, p))
        js.append(float(np.mean(j_obj)))
        fs.append(float(np.mean(f_obj)))
    return SequenceScore(name, ids, js, fs)


def summarize(scores: Iterable[SequenceScore]) -> dict:
    """Overall J, F, J&F (mean over all objects) and the per-sequence dict."""
    scores = list(scores)
    all_j = [j for s in scores for j in s.j_per_object]
    all_f = [f for s in scores for f in s.f_per_object]
    j = float(np.mean(all_j)) if all_j else float("nan")
    f = float(np.mean(all_f)) if all_f else float("nan")
    return {"J": j, "F": f, "J&F": (j + f) / 2, "sequences": {s.name: s.to_dict() for s in scores}}


# ---------------------------------------------------------------- files


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
