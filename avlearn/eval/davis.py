"""DAVIS video object segmentation metrics: J (region IoU) and F (boundary F-measure) (files: avlearn.data.davis).

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

"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from avlearn.data.davis import DavisLayoutError

BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal


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
