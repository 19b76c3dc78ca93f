"""Metrics against hand-computed cases and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, ndcg_score

from avlearn.eval import metrics as m

SCORES = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
REL = np.array([[0, 0, 1], [1, 0, 0]])


def test_accuracy():
    assert m.accuracy(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])) == 0.5
    with pytest.raises(ValueError):
        m.accuracy(np.array([]), np.array([]))


def test_recall_precision_by_hand():
    # query 0 ranks items 0, 2, 1 (relevant at rank 2); query 1 ranks 1, 2, 0 (relevant at rank 3)
    assert m.recall_at_k(SCORES, REL, 1) == 0.0
    assert m.recall_at_k(SCORES, REL, 2) == 0.5
    assert m.recall_at_k(SCORES, REL, 3) == 1.0
    assert m.precision_at_k(SCORES, REL, 2) == pytest.approx(0.25)
    assert m.mean_average_precision(SCORES, REL) == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_exclude_removes_items():
    excl = np.array([[True, False, False], [False, False, False]])  # drop item 0 from query 0's ranking
    assert m.recall_at_k(SCORES, REL, 1, excl) == 0.5
    assert m.mean_average_precision(SCORES, REL, excl) == pytest.approx((1 + 1 / 3) / 2)


def test_map_matches_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 40))
    rel = rng.integers(0, 3, size=(6, 40))
    rel[:, 0] = 1  # every query has something relevant
    ref = np.mean([average_precision_score(rel[q] > 0, scores[q]) for q in range(6)])
    assert m.mean_average_precision(scores, rel) == pytest.approx(ref)


def test_ndcg_by_hand_and_sklearn():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    rel = np.array([[0, 2, 1, 3]])
    got = m.ndcg_at_k(scores, rel, 4)
    dcg = 2 / np.log2(3) + 1 / 2 + 3 / np.log2(5)
    ideal = 3 + 2 / np.log2(3) + 1 / 2
    assert got == pytest.approx(dcg / ideal)
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(5, 50))
    rel = rng.integers(0, 4, size=(5, 50))
    for k in (1, 5, 30):
        assert m.ndcg_at_k(scores, rel, k) == pytest.approx(ndcg_score(rel, scores, k=k))


def test_retrieval_report_keys():
    out = m.retrieval_report(SCORES, REL, recall_ks=(1, 2), precision_k=2, ndcg_k=3)
    assert set(out) == {"recall@1", "recall@2", "precision@2", "mAP", "nDCG@3", "queries"}
    assert out["recall@2"] == 0.5


def test_ciou_by_hand():
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    gt = m.boxes_mask([[0.0, 0.5, 1.0, 1.0]], (4, 4))  # the bottom half
    assert gt.sum() == 8 and gt[2:].all()
    # LVS threshold: pixels > sorted[8] = 8 → values 9..15, all in the bottom half
    assert m.ciou(heat, gt) == pytest.approx(7 / 8)
    top = m.boxes_mask([[0.0, 0.0, 1.0, 0.5]], (4, 4))
    assert m.ciou(heat, top) == 0.0
    assert m.pointing_hit(heat, gt) and not m.pointing_hit(heat, top)
    with pytest.raises(ValueError):
        m.ciou(heat, np.zeros((2, 2), bool))


def test_ciou_ceiling():
    small = m.boxes_mask([[0.0, 0.0, 0.5, 0.5]], (4, 4))  # 4 of 16 pixels; the LVS threshold keeps 7
    assert m.ciou_ceiling(small) == pytest.approx(4 / 7)
    full = np.ones((4, 4), bool)
    assert m.ciou_ceiling(full) == pytest.approx(7 / 16)
    big = m.boxes_mask([[0.0, 0.0, 0.1, 0.1]], (200, 200))  # 400 px vs ~20000 kept: ≈ |box| / (0.5 * area)
    assert m.ciou_ceiling(big) == pytest.approx(400 / (0.5 * 200 * 200), rel=1e-3)
    # a heatmap shaped exactly like the box reaches no more than the ceiling
    heat = small.astype(np.float32) + np.linspace(0, 0.1, 16).reshape(4, 4)
    assert m.ciou(heat, small) == pytest.approx(m.ciou_ceiling(small))


def test_ciou_summary_by_hand_and_sklearn_auc():
    out = m.ciou_summary([0.0, 0.5, 1.0])
    assert out["cIoU@0.5"] == pytest.approx(2 / 3)
    assert out["AUC"] == pytest.approx(0.05 * (5 / 6 + 6 * 1 + 0.5 + 3))
    curve = [np.mean(np.array([0.0, 0.5, 1.0]) >= t) for t in m.CIOU_THRESHOLDS]
    assert out["AUC"] == pytest.approx(auc(m.CIOU_THRESHOLDS, curve))
