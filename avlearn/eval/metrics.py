"""Evaluation metrics: classification, retrieval (graded relevance, tie-aware) and localization.

Retrieval functions take a score matrix ``scores`` (Q, N) (higher = more similar)
and a relevance matrix ``relevance`` (Q, N) (0 = irrelevant; larger = more
relevant; binary metrics use ``relevance > 0``). An optional boolean ``exclude``
(Q, N) removes items from a query's ranking *and* from its relevant set (the
query's own clip). Every figure is **tie-aware** (McSherry & Najork, "Computing
information retrieval performance measures efficiently in the presence of tied
scores", ECIR 2008): items whose scores differ by at most ``TIE_ATOL`` form one tie
group, and a figure is its expected value over all orders of each group, so a
network that gives every item the same score ranks them as a random order would
(mAP ≈ the share of relevant items, recall@1 < recall@10), never in index order.

Localization reproduces the LVS evaluation (Chen et al., "Localizing Visual Sounds
the Hard Way", CVPR 2021; github.com/hche11/Localizing-Visual-Sounds-the-Hard-Way,
``test.py`` and ``utils.py``) on a 224 × 224 map: ground truth from boxes
(:func:`gt_map`; :func:`consensus_gt_map` for Flickr-SoundNet's several annotators),
the heatmap resized to 224 × 224 (bilinear) and min-max normalised, the prediction =
pixels above the value at index 224·224/2 of the sorted map (:func:`lvs_prediction`),
``cIoU = Σ pred·gt / (Σ gt + Σ pred·[gt = 0])``; ``cIoU@0.5`` = the fraction of samples
with cIoU >= 0.5 and ``AUC`` = the area (trapezoid) under "fraction with cIoU >= t" at
t = 0.05 i, i = 0..20. docs/metrics.md states each figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIE_ATOL = 1e-6  # scores this close are one tie group (float32 cosines of identical vectors differ by ~1e-7)
LVS_SIZE_PX = 224  # the reference evaluates on 224 x 224 maps
CIOU_THRESHOLDS = np.array([0.05 * i for i in range(21)])  # as the reference computes them (0.05 * 6 > 0.3)
FLICKR_CONSENSUS = 2  # Flickr-SoundNet: a pixel in this many annotated boxes counts fully (reference: gt /= 2, clip at 1)


# ---------------------------------------------------------------- classification


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Fraction of equal entries; ``pred`` and ``target`` are (N,) labels. Raises on empty/mismatched input."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"accuracy needs two equal non-empty shapes, got {pred.shape} and {target.shape}")
    return float(np.mean(pred == target))


# ---------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class Ranking:
    """One query's ranking of its non-excluded items, as tie groups in descending score order.

    Attributes:
        grades: (n,) relevance grades in score order (arbitrary order within a tie group).
        start: (G,) position of each group's first item; size: (G,) items per group.
        hits: (G,) relevant items (grade > 0) per group; group: (n,) group of each position.
    """

    grades: np.ndarray
    start: np.ndarray
    size: np.ndarray
    hits: np.ndarray
    group: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, grades: np.ndarray, atol: float = TIE_ATOL) -> Ranking:
        """Rank (n,) ``scores`` (higher first) carrying (n,) ``grades``."""
        order = np.argsort(-scores, kind="stable")
        s, g = scores[order], grades[order]
        new = np.ones(s.size, bool)
        new[1:] = (s[:-1] - s[1:]) > atol
        start = np.flatnonzero(new)
        size = np.diff(np.append(start, s.size))
        hits = np.add.reduceat((g > 0).astype(np.int64), start) if s.size else np.zeros(0, np.int64)
        return cls(g, start, size, hits, np.cumsum(new) - 1)

    @property
    def relevant(self) -> int:
        return int(self.hits.sum())

    def _at(self, k: int) -> tuple[int, int, int, int]:
        """For the group holding rank k: (relevant items in earlier groups, m = its items within the top k, its size, its hits)."""
        g = int(self.group[k - 1])
        return int(self.hits[:g].sum()), k - int(self.start[g]), int(self.size[g]), int(self.hits[g])

    def hit_at(self, k: int) -> float:
        """Expected value of "a relevant item in the top k" over the orders of tied items."""
        if k >= self.grades.size:
            return float(self.relevant > 0)
        before, m, n, h = self._at(k)
        if before > 0:
            return 1.0
        j = np.arange(m)
        none = float(np.prod(np.clip((n - h - j) / (n - j), 0.0, None)))  # hypergeometric P(no relevant in m draws)
        return 1.0 - none

    def precision_at(self, k: int) -> float:
        """Expected (relevant items in the top k) / k."""
        if k >= self.grades.size:
            return self.relevant / k
        before, m, n, h = self._at(k)
        return (before + m * h / n) / k

    def average_precision(self) -> float:
        """Expected AP over the orders of tied items (McSherry & Najork 2008); NaN when nothing is relevant.

        A relevant item at position j (1-based) of a group with n items, h relevant, after c relevant
        items and s items, has expected precision (c + 1 + (j - 1)(h - 1)/(n - 1)) / (s + j); each
        position is equally likely.
        """
        if self.relevant == 0:
            return float("nan")
        pos = np.arange(self.grades.size)
        g = self.group
        n, h = self.size[g], self.hits[g]
        before = (np.cumsum(self.hits) - self.hits)[g]
        j0 = pos - self.start[g]
        frac = np.where(n > 1, j0 * (h - 1) / np.maximum(n - 1, 1), 0.0)
        per_group = np.add.reduceat((before + 1 + frac) / (pos + 1), self.start)
        return float(np.sum(self.hits * per_group / self.size) / self.relevant)

    def dcg_at(self, k: int) -> float:
        """Expected DCG@k: each position gets its tie group's mean grade (linear gain, log2 discount)."""
        mean = np.add.reduceat(self.grades, self.start) / self.size
        gains = mean[self.group[:k]]
        return float(np.sum(gains / np.log2(np.arange(gains.size) + 2)))

    def ndcg_at(self, k: int) -> float:
        """Expected DCG@k over the ideal DCG@k of the same items; NaN when every grade is 0."""
        ideal = dcg(np.sort(self.grades)[::-1], k)
        return self.dcg_at(k) / ideal if ideal > 0 else float("nan")


def _check(scores: np.ndarray, relevance: np.ndarray, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != relevance.shape:
        raise ValueError(f"scores and relevance must both be (Q, N), got {scores.shape} and {relevance.shape}")
    if np.any(relevance < 0):
        raise ValueError("relevance grades must be >= 0")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    mask = np.zeros(scores.shape, bool) if exclude is None else np.asarray(exclude, bool)
    if mask.shape != scores.shape:
        raise ValueError(f"exclude must be {scores.shape}, got {mask.shape}")
    return scores, relevance, mask


def rankings(scores: np.ndarray, relevance: np.ndarray, exclude: np.ndarray | None = None, atol: float = TIE_ATOL) -> list[Ranking]:
    """Per query: the :class:`Ranking` of its non-excluded items."""
    s, rel, mask = _check(scores, relevance, exclude)
    return [Ranking.of(s[q, ~mask[q]], rel[q, ~mask[q]], atol) for q in range(s.shape[0])]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _recall(ranked: list[Ranking], k: int) -> float:
    return _mean([r.hit_at(k) for r in ranked if r.relevant])


def _precision(ranked: list[Ranking], k: int) -> float:
    return _mean([r.precision_at(k) for r in ranked if r.relevant])


def _map(ranked: list[Ranking]) -> float:
    return _mean([r.average_precision() for r in ranked if r.relevant])


def _ndcg(ranked: list[Ranking], k: int) -> float:
    return _mean([v for v in (r.ndcg_at(k) for r in ranked) if np.isfinite(v)])


def recall_at_k(scores: np.ndarray, relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """R@k as used in cross-modal retrieval: the fraction of queries with a relevant item in the top k (tie-aware).

    Queries with no relevant item at all are skipped (NaN if none is left).
    """
    return _recall(rankings(scores, relevance, exclude), k)


def precision_at_k(scores: np.ndarray, relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """P@k: mean over queries (with a relevant item) of (relevant items in the top k) / k (tie-aware)."""
    return _precision(rankings(scores, relevance, exclude), k)


def average_precision(ranked_relevant: np.ndarray) -> float:
    """AP of one strict ranking: ``ranked_relevant`` (N,) bool in rank order. NaN when nothing is relevant."""
    rel = np.asarray(ranked_relevant, bool)
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    precision = hits / np.arange(1, rel.size + 1)
    return float(np.sum(precision[rel]) / rel.sum())


def mean_average_precision(scores: np.ndarray, relevance: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """mAP over queries that have at least one relevant item (binary relevance = grade > 0; tie-aware AP)."""
    return _map(rankings(scores, relevance, exclude))


def dcg(grades: np.ndarray, k: int) -> float:
    """Discounted cumulative gain of grades in rank order: sum_i g_i / log2(i + 2), i < k (linear gain)."""
    g = np.asarray(grades, np.float64)[:k]
    return float(np.sum(g / np.log2(np.arange(g.size) + 2)))


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """nDCG@k with graded relevance (linear gains, log2 discount, tie-aware; as sklearn.metrics.ndcg_score).

    Queries whose items are all irrelevant are skipped (NaN if none is left).
    """
    return _ndcg(rankings(scores, relevance, exclude), k)


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
    """All retrieval figures for one direction (each query ranked once, tie-aware): recall@k, precision@k, mAP, nDCG@k.

    ``queries``: how many queries have a relevant item (the ones the figures average over);
    ``chance_mAP``: the mean share of relevant items among a query's candidates, the mAP a
    random ranking reaches approximately.
    """
    ranked = rankings(scores, relevance, exclude)
    out = {f"recall@{k}": _recall(ranked, k) for k in recall_ks}
    out[f"precision@{precision_k}"] = _precision(ranked, precision_k)
    out["mAP"] = _map(ranked)
    out[f"nDCG@{ndcg_k}"] = _ndcg(ranked, ndcg_k)
    out["queries"] = float(sum(bool(r.relevant) for r in ranked))
    out["chance_mAP"] = _mean([r.relevant / r.grades.size for r in ranked if r.relevant])
    return out


# ---------------------------------------------------------------- localization (LVS protocol)


def _box_pixels(box: Sequence[float], size_px: int) -> tuple[int, int, int, int]:
    """Normalised [x0, y0, x1, y1] → integer (x0, y0, x1, y1) on a size_px grid as the reference does: int(size * max(v, 0))."""
    if len(box) != 4:
        raise ValueError(f"a box needs 4 numbers [x0, y0, x1, y1], got {list(box)}")
    x0, y0, x1, y1 = (int(size_px * max(float(v), 0.0)) for v in box)
    return x0, y0, x1, y1


def gt_map(boxes: Sequence[Sequence[float]], size_px: int = LVS_SIZE_PX) -> np.ndarray:
    """VGG-SS ground truth: the union of normalised boxes as a (size_px, size_px) float64 map of 0/1.

    Rows ``y0:y1`` and columns ``x0:x1`` of each box (coordinates ``int(size_px * max(v, 0))``) are set.
    """
    m = np.zeros((size_px, size_px))
    for box in boxes:
        x0, y0, x1, y1 = _box_pixels(box, size_px)
        m[y0:y1, x0:x1] = 1.0
    return m


def consensus_gt_map(annotators: Sequence[Sequence[Sequence[float]]], size_px: int = LVS_SIZE_PX) -> np.ndarray:
    """Flickr-SoundNet ground truth from several annotators' boxes: per pixel min(1, boxes covering it / 2).

    As the reference sums every annotated box (of all annotators), divides by
    ``FLICKR_CONSENSUS`` and clips at 1: a pixel two annotators agree on counts 1, one annotator's 0.5.
    """
    m = np.zeros((size_px, size_px))
    for boxes in annotators:
        for box in boxes:
            x0, y0, x1, y1 = _box_pixels(box, size_px)
            m[y0:y1, x0:x1] += 1.0
    return np.minimum(m / FLICKR_CONSENSUS, 1.0)


def normalize_img(value: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1]; a constant map is returned unchanged (as the reference's ``normalize_img``)."""
    v = np.asarray(value, np.float64)
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi - lo != 0 else v


def lvs_prediction(heatmap: np.ndarray) -> np.ndarray:
    """The reference's binary prediction (H, W) bool from a heatmap resized to the frame grid.

    ``pred = 1 - normalize_img(-heat)``; ``thr = sort(pred)[H*W // 2]``; pixels above ``thr`` become 1,
    pixels below 1 become 0, and ``pred >= 0.5`` is predicted. A tie-free map keeps H*W/2 - 1 pixels;
    a constant map of values >= 0 predicts the whole frame.
    """
    pred = 1.0 - normalize_img(-np.asarray(heatmap, np.float64))
    thr = np.sort(pred.ravel())[int(pred.size / 2)]
    pred = pred.copy()
    pred[pred > thr] = 1.0
    pred[pred < 1] = 0.0
    return pred >= 0.5


def ciou(heatmap: np.ndarray, gt: np.ndarray) -> float:
    """Consensus IoU of one heatmap against a ground-truth map of the same shape (0/1, or Flickr's 0/0.5/1).

    ``Σ pred·gt / (Σ gt + Σ pred·[gt = 0])``; 0.0 where that is 0/0 (the reference's NaN, which fails every threshold).
    """
    heat, g = np.asarray(heatmap), np.asarray(gt, np.float64)
    if heat.shape != g.shape:
        raise ValueError(f"heatmap {heat.shape} and ground truth {g.shape} differ; resize the heatmap to {g.shape} first")
    pred = lvs_prediction(heat)
    denom = g.sum() + np.sum(pred & (g == 0))
    return float(np.sum(pred * g) / denom) if denom > 0 else 0.0


def ciou_ceiling(gt: np.ndarray) -> float:
    """The best cIoU any tie-free heatmap can reach: its prediction has m = H*W - H*W//2 - 1 pixels, best
    placed on the m highest ground-truth values (for a binary box: min(|box|, m) / max(|box|, m))."""
    g = np.sort(np.asarray(gt, np.float64).ravel())[::-1]
    m = g.size - int(g.size / 2) - 1
    denom = g.sum() + max(0, m - int(np.count_nonzero(g)))
    return float(g[:m].sum() / denom) if denom > 0 else 0.0


def ciou_summary(ious: Sequence[float], *, at: float = 0.5) -> dict[str, float]:
    """LVS summary of per-sample cIoUs: ``cIoU@at`` = fraction >= at, ``AUC`` (trapezoid) over t = 0.05 i, i = 0..20."""
    values = np.asarray(list(ious), np.float64)
    if values.size == 0:
        raise ValueError("no cIoU values to summarise")
    curve = np.array([np.mean(values >= t) for t in CIOU_THRESHOLDS])
    auc = float(np.trapezoid(curve, CIOU_THRESHOLDS))
    return {f"cIoU@{at}": float(np.mean(values >= at)), "AUC": auc, "mean_cIoU": float(values.mean())}


def pointing_score(heatmap: np.ndarray, gt: np.ndarray) -> float:
    """Pointing game: whether the heatmap's maximum lies in an annotated box (gt > 0).

    Tie-aware: with several pixels at the maximum, the share of them inside a box (the
    expected hit of a uniformly chosen peak), so a constant map scores the boxes' area share.
    """
    heat, g = np.asarray(heatmap), np.asarray(gt)
    if heat.shape != g.shape:
        raise ValueError(f"heatmap {heat.shape} and ground truth {g.shape} differ")
    peak = heat == heat.max()
    return float(np.sum(peak & (g > 0)) / np.sum(peak))
