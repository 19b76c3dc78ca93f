"""Evaluation metrics: classification, retrieval (graded relevance) and localization.

Retrieval functions take a score matrix ``scores`` (Q, N) (higher = more similar)
and a relevance matrix ``relevance`` (Q, N) (0 = irrelevant; larger = more
relevant; binary metrics use ``relevance > 0``). An optional boolean ``exclude``
(Q, N) removes items from a query's ranking (e.g. the query itself when
retrieving within one modality). Ties in the score are broken by item index
(stable sort), so results are deterministic.

Localization follows the LVS protocol (Chen et al., "Localizing Visual Sounds
the Hard Way", CVPR 2021) on VGG-Sound Source annotations: the heatmap is
resized to the frame, its top 50% of pixels form the prediction, and the
consensus IoU (cIoU) against the union of the annotated boxes is
``|pred ∩ gt| / (|gt| + |pred \\ gt|)``. The summary is the fraction of samples with
cIoU >= 0.5 and the area under the curve "fraction with cIoU >= t" for
t = 0, 0.05, ..., 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CIOU_THRESHOLDS = np.round(np.arange(21) * 0.05, 2)


# ---------------------------------------------------------------- classification


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Fraction of equal entries; ``pred`` and ``target`` are (N,) labels. Raises on empty/mismatched input."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"accuracy needs two equal non-empty shapes, got {pred.shape} and {target.shape}")
    return float(np.mean(pred == target))


# ---------------------------------------------------------------- retrieval


def _check(scores: np.ndarray, relevance: np.ndarray, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != relevance.shape:
        raise ValueError(f"scores and relevance must both be (Q, N), got {scores.shape} and {relevance.shape}")
    if np.any(relevance < 0):
        raise ValueError("relevance grades must be >= 0")
    mask = np.zeros(scores.shape, bool) if exclude is None else np.asarray(exclude, bool)
    if mask.shape != scores.shape:
        raise ValueError(f"exclude must be {scores.shape}, got {mask.shape}")
    return scores, relevance, mask


def _ranked(scores: np.ndarray, relevance: np.ndarray, exclude: np.ndarray) -> list[np.ndarray]:
    """Per query: the relevance grades of the non-excluded items in descending score order."""
    out = []
    for q in range(scores.shape[0]):
        keep = np.flatnonzero(~exclude[q])
        order = keep[np.argsort(-scores[q, keep], kind="stable")]
        out.append(relevance[q, order])
    return out


def _recall(ranked: list[np.ndarray], k: int) -> float:
    hits = [float(np.any(r[:k] > 0)) for r in ranked if np.any(r > 0)]
    return float(np.mean(hits)) if hits else float("nan")


def _precision(ranked: list[np.ndarray], k: int) -> float:
    values = [np.sum(r[:k] > 0) / k for r in ranked if np.any(r > 0)]
    return float(np.mean(values)) if values else float("nan")


def _map(ranked: list[np.ndarray]) -> float:
    aps = [average_precision(r > 0) for r in ranked if np.any(r > 0)]
    return float(np.mean(aps)) if aps else float("nan")


def _ndcg(ranked: list[np.ndarray], k: int) -> float:
    values = []
    for r in ranked:
        ideal = dcg(np.sort(r)[::-1], k)  # the ideal order of the same (non-excluded) items
        if ideal > 0:
            values.append(dcg(r, k) / ideal)
    return float(np.mean(values)) if values else float("nan")


def recall_at_k(scores: np.ndarray, relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """R@k as used in cross-modal retrieval: the fraction of queries with a relevant item in the top k.

    Queries with no relevant item at all are skipped (NaN if none is left).
    """
    return _recall(_ranked(*_check(scores, relevance, exclude)), k)


def precision_at_k(scores: np.ndarray, relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """P@k: mean over queries (with a relevant item) of (relevant items in the top k) / k."""
    return _precision(_ranked(*_check(scores, relevance, exclude)), k)


def average_precision(ranked_relevant: np.ndarray) -> float:
    """AP of one ranking: ``ranked_relevant`` (N,) bool in rank order. NaN when nothing is relevant."""
    rel = np.asarray(ranked_relevant, bool)
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    precision = hits / np.arange(1, rel.size + 1)
    return float(np.sum(precision[rel]) / rel.sum())


def mean_average_precision(scores: np.ndarray, relevance: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """mAP over queries that have at least one relevant item (binary relevance = grade > 0)."""
    return _map(_ranked(*_check(scores, relevance, exclude)))


def dcg(grades: np.ndarray, k: int) -> float:
    """Discounted cumulative gain of grades in rank order: sum_i g_i / log2(i + 2), i < k (linear gain)."""
    g = np.asarray(grades, np.float64)[:k]
    return float(np.sum(g / np.log2(np.arange(g.size) + 2)))


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """nDCG@k with graded relevance (linear gains, log2 discount; as sklearn.metrics.ndcg_score).

    Queries whose items are all irrelevant are skipped (NaN if none is left).
    """
    return _ndcg(_ranked(*_check(scores, relevance, exclude)), k)


def json_safe(obj: object) -> object:
    """NaN/inf → None, numpy scalars → Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def retrieval_report(
    scores: np.ndarray,
    relevance: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    recall_ks: Sequence[int] = (1, 5, 10),
    precision_k: int = 10,
    ndcg_k: int = 30,
) -> dict[str, float]:
    """All retrieval figures for one direction (each query ranked once): recall@k, precision@k, mAP, nDCG@k."""
    ranked = _ranked(*_check(scores, relevance, exclude))
    out = {f"recall@{k}": _recall(ranked, k) for k in recall_ks}
    out[f"precision@{precision_k}"] = _precision(ranked, precision_k)
    out["mAP"] = _map(ranked)
    out[f"nDCG@{ndcg_k}"] = _ndcg(ranked, ndcg_k)
    out["queries"] = float(sum(bool(np.any(r > 0)) for r in ranked))
    return out


# ---------------------------------------------------------------- localization


def boxes_mask(boxes: Sequence[Sequence[float]], size_px: tuple[int, int], *, normalized: bool = True) -> np.ndarray:
    """Union of boxes [x0, y0, x1, y1] as an (H, W) bool mask (pixel centres inside a box count)."""
    h, w = size_px
    mask = np.zeros((h, w), bool)
    ys = (np.arange(h) + 0.5)[:, None]
    xs = (np.arange(w) + 0.5)[None, :]
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        if normalized:
            x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box {list(box)} has x1 < x0 or y1 < y0")
        mask |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return mask


def top_fraction_mask(heatmap: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """The LVS threshold: pixels strictly above the value at rank ``(1 - fraction) * HW`` of the sorted map.

    For a map without ties this keeps exactly ``fraction`` of the pixels (minus one).
    """
    heat = np.asarray(heatmap, np.float64)
    flat = np.sort(heat.ravel())
    thr = flat[min(int(flat.size * (1.0 - fraction)), flat.size - 1)]
    return heat > thr


def ciou(heatmap: np.ndarray, gt_mask: np.ndarray, fraction: float = 0.5) -> float:
    """Consensus IoU of one (H, W) heatmap against an (H, W) bool ground-truth mask (LVS protocol)."""
    heat = np.asarray(heatmap)
    gt = np.asarray(gt_mask, bool)
    if heat.shape != gt.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {gt.shape} differ; resize the heatmap to the frame first")
    pred = top_fraction_mask(heat, fraction)
    denom = gt.sum() + np.sum(pred & ~gt)
    return float(np.sum(pred & gt) / denom) if denom > 0 else 0.0


def ciou_ceiling(gt_mask: np.ndarray, fraction: float = 0.5) -> float:
    """The best cIoU any heatmap can reach with top-``fraction`` thresholding: min(|gt|, |pred|) / max(|gt|, |pred|).

    ``|pred|`` is what :func:`top_fraction_mask` keeps of a tie-free map (about ``fraction * H * W``),
    so for a box smaller than that the ceiling is about ``|box| / (fraction * frame area)``.
    """
    size = np.asarray(gt_mask).size
    gt = int(np.asarray(gt_mask, bool).sum())
    pred = size - min(int(size * (1.0 - fraction)), size - 1) - 1
    return float(min(gt, pred) / max(gt, pred)) if max(gt, pred) > 0 else 0.0


def ciou_summary(ious: Sequence[float], *, at: float = 0.5) -> dict[str, float]:
    """LVS summary of per-sample cIoUs: ``cIoU@at`` = fraction >= at, ``AUC`` over t = 0, 0.05, ..., 1."""
    values = np.asarray(list(ious), np.float64)
    if values.size == 0:
        raise ValueError("no cIoU values to summarise")
    curve = np.array([np.mean(values >= t) for t in CIOU_THRESHOLDS])
    auc = float(np.trapezoid(curve, CIOU_THRESHOLDS))
    return {f"cIoU@{at}": float(np.mean(values >= at)), "AUC": auc, "mean_cIoU": float(values.mean())}


def pointing_hit(heatmap: np.ndarray, gt_mask: np.ndarray) -> bool:
    """Pointing game: whether the heatmap's peak (first argmax) lies inside the ground truth."""
    heat = np.asarray(heatmap)
    gt = np.asarray(gt_mask, bool)
    if heat.shape != gt.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {gt.shape} differ")
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(gt[y, x])
