"""Metrics against hand-computed cases, brute force over tie orders, and sklearn."""

from __future__ import annotations

import itertools
from math import comb

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


def test_exclude_removes_items_from_ranking_and_relevant_set():
    excl = np.array([[True, False, False], [False, False, False]])  # drop item 0 from query 0's ranking
    assert m.recall_at_k(SCORES, REL, 1, excl) == 0.5
    assert m.mean_average_precision(SCORES, REL, excl) == pytest.approx((1 + 1 / 3) / 2)
    # query 1's only relevant item excluded: the query has nothing to find and is skipped, not scored 0
    only = np.array([[False, False, False], [True, False, False]])
    report = m.retrieval_report(SCORES, REL, exclude=only, recall_ks=(1,))
    assert report["queries"] == 1.0 and report["recall@1"] == 0.0 and report["mAP"] == pytest.approx(0.5)


def test_map_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 40))
    rel = rng.integers(0, 3, size=(6, 40))
    rel[:, 0] = 1  # every query has something relevant
    ref = np.mean([average_precision_score(rel[q] > 0, scores[q]) for q in range(6)])
    assert m.mean_average_precision(scores, rel) == pytest.approx(ref)


def test_ndcg_by_hand_and_sklearn_with_ties():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    rel = np.array([[0, 2, 1, 3]])
    got = m.ndcg_at_k(scores, rel, 4)
    dcg = 2 / np.log2(3) + 1 / 2 + 3 / np.log2(5)
    ideal = 3 + 2 / np.log2(3) + 1 / 2
    assert got == pytest.approx(dcg / ideal)
    rng = np.random.default_rng(1)
    for scores in (rng.normal(size=(5, 50)), rng.integers(0, 3, size=(5, 50)).astype(float)):  # sklearn averages over ties too
        rel = rng.integers(0, 4, size=(5, 50))
        for k in (1, 5, 30):
            assert m.ndcg_at_k(scores, rel, k) == pytest.approx(ndcg_score(rel, scores, k=k))


def _strict_figures(grades: np.ndarray, k: int) -> tuple[float, float, float, float]:
    rel = grades > 0
    return float(rel[:k].any()), rel[:k].sum() / k, m.average_precision(rel), m.dcg(grades, k)


def test_tie_aware_figures_are_the_mean_over_every_order_of_the_ties():
    """Brute force: enumerate every order of every tie group; the tie-aware figure is their mean."""
    rng = np.random.default_rng(2)
    for _ in range(150):
        n = int(rng.integers(1, 8))
        scores = rng.integers(0, 3, n).astype(float)
        grades = rng.integers(0, 3, n).astype(float)
        grades[rng.integers(n)] = 1.0
        k = int(rng.integers(1, n + 2))
        groups = [np.flatnonzero(scores == v) for v in sorted(set(scores), reverse=True)]
        runs = [_strict_figures(grades[np.concatenate(p)], k) for p in itertools.product(*[list(itertools.permutations(g)) for g in groups])]
        r = m.Ranking.of(scores, grades)
        got = (r.hit_at(k), r.precision_at(k), r.average_precision(), r.dcg_at(k))
        np.testing.assert_allclose(got, np.mean(runs, axis=0), rtol=1e-12, atol=1e-12)


def test_all_equal_scores_rank_like_a_random_order():
    """A network giving every item the same vector: each figure is its expectation over random orders."""
    n, rel_per_query, queries = 40, 4, 6
    relevance = np.zeros((queries, n))
    for q in range(queries):
        relevance[q, q : q + rel_per_query] = 1
    scores = np.full((queries, n), 0.25)
    scores += np.random.default_rng(0).uniform(-1e-7, 1e-7, scores.shape)  # float noise of identical vectors: still one tie group
    out = m.retrieval_report(scores, relevance)
    for k in (1, 5, 10):
        assert out[f"recall@{k}"] == pytest.approx(1 - comb(n - rel_per_query, k) / comb(n, k))
    assert out["recall@1"] == pytest.approx(rel_per_query / n) and out["recall@1"] < out["recall@10"] < 1
    assert out["precision@10"] == pytest.approx(rel_per_query / n)
    # expected AP of a random order, by simulation; close to (a bit above) the prevalence
    rng = np.random.default_rng(1)
    sims = [m.average_precision(rng.permutation(relevance[0] > 0)) for _ in range(20000)]
    assert out["mAP"] == pytest.approx(np.mean(sims), abs=0.005)
    assert out["chance_mAP"] == pytest.approx(rel_per_query / n) and rel_per_query / n < out["mAP"] < 2 * rel_per_query / n


def test_retrieval_report_keys():
    out = m.retrieval_report(SCORES, REL, recall_ks=(1, 2), precision_k=2, ndcg_k=3)
    assert set(out) == {"recall@1", "recall@2", "precision@2", "mAP", "nDCG@3", "queries", "chance_mAP"}
    assert out["recall@2"] == 0.5


# ---------------------------------------------------------------- localization (LVS reference protocol)


def test_gt_maps_by_hand():
    g = m.gt_map([[0.1, 0.2, 0.5, 0.45]], size_px=10)  # int(10 * v): columns 1..4, rows 2..3
    assert g.shape == (10, 10) and g.sum() == 4 * 2 and g[2:4, 1:5].all()
    assert m.gt_map([[-0.2, 0.0, 0.3, 1.0]], size_px=10)[:, :3].all()  # negative coordinates clamp to 0
    assert m.gt_map([[0.5, 0.5, 0.5, 0.9]], size_px=10).sum() == 0  # a zero-width box marks nothing
    assert m.gt_map([[0, 0, 0.5, 0.5], [0.25, 0.25, 1, 1]], size_px=4).sum() == 4 + 9 - 1  # union
    assert m.gt_map([[0, 0, 1, 1]]).shape == (224, 224)
    # Flickr: 3 annotators; a pixel in 1 box counts 0.5, in 2 or more boxes 1
    c = m.consensus_gt_map([[[0, 0, 0.5, 1]], [[0, 0, 0.25, 1]], [[0, 0, 0.25, 1]]], size_px=4)
    assert c[:, 0].tolist() == [1.0] * 4 and c[:, 1].tolist() == [0.5] * 4 and c[:, 2:].sum() == 0


def test_lvs_prediction_and_ciou_by_hand():
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    gt = m.gt_map([[0.0, 0.5, 1.0, 1.0]], size_px=4)  # the bottom half
    assert gt.sum() == 8 and gt[2:].all()
    # sorted value at index 16 / 2 = 8 is the threshold; values 9..15 (7 pixels, all in the bottom half) are predicted
    assert m.lvs_prediction(heat).sum() == 7 and m.lvs_prediction(heat)[2:].sum() == 7
    assert m.ciou(heat, gt) == pytest.approx(7 / 8)
    top = m.gt_map([[0.0, 0.0, 1.0, 0.5]], size_px=4)
    assert m.ciou(heat, top) == 0.0  # 0 / (8 + 7)
    # consensus weights: column 0 counts 1, column 1 counts 0.5; the prediction is still the values 9..15
    flickr = m.consensus_gt_map([[[0, 0, 0.5, 1]], [[0, 0, 0.25, 1]]], size_px=4)
    pred = heat > 8  # columns 1-3 of row 2 and all of row 3
    expect = np.sum(pred * flickr) / (flickr.sum() + np.sum(pred & (flickr == 0)))
    assert expect == pytest.approx((0.5 + 1 + 0.5) / (6 + 4))  # (row 2 col 1, row 3 cols 0-1) / (Σ gt + 4 predicted pixels outside)
    assert m.ciou(heat, flickr) == pytest.approx(expect)
    # the min-max normalisation does not move the threshold; a constant non-negative map predicts the whole frame
    assert m.ciou(3.0 * heat - 7.0, gt) == pytest.approx(7 / 8)
    assert m.lvs_prediction(np.full((4, 4), 0.3)).all() and m.ciou(np.full((4, 4), 0.3), gt) == pytest.approx(8 / 16)
    # more than half the pixels at the maximum: they are all kept (pred stays 1 where it equals 1)
    plateau = np.zeros((4, 4))
    plateau[1:] = 1.0
    assert m.lvs_prediction(plateau).sum() == 12
    with pytest.raises(ValueError):
        m.ciou(heat, np.zeros((2, 2)))


def test_ciou_summary_by_hand_and_sklearn_auc():
    out = m.ciou_summary([0.0, 0.5, 1.0])
    assert out["cIoU@0.5"] == pytest.approx(2 / 3)
    assert out["AUC"] == pytest.approx(0.05 * (5 / 6 + 6 * 1 + 0.5 + 3))
    curve = [np.mean(np.array([0.0, 0.5, 1.0]) >= t) for t in m.CIOU_THRESHOLDS]
    assert out["AUC"] == pytest.approx(auc(m.CIOU_THRESHOLDS, curve))
    # thresholds are 0.05 * i as the reference computes them: 0.05 * 6 = 0.30000000000000004 > 0.3
    assert m.CIOU_THRESHOLDS[6] > 0.3
    fails_0_30 = m.ciou_summary([0.3])
    assert fails_0_30["AUC"] == pytest.approx(0.05 * (5 + 0.5))  # 1 up to t = 0.25, 0 from 0.30


def test_pointing_game_by_hand_with_ties():
    gt = m.gt_map([[0.0, 0.5, 1.0, 1.0]], size_px=4)
    heat = np.arange(16, dtype=float).reshape(4, 4)
    assert m.pointing_score(heat, gt) == 1.0 and m.pointing_score(heat[::-1], gt) == 0.0
    flat = np.ones((4, 4))
    assert m.pointing_score(flat, gt) == 0.5  # every pixel is the peak: half of them are in the box
    two = np.zeros((4, 4))
    two[0, 0] = two[3, 3] = 1.0
    assert m.pointing_score(two, gt) == 0.5


def test_ciou_ceiling():
    small = m.gt_map([[0.0, 0.0, 0.5, 0.5]], size_px=4)  # 4 of 16 pixels; a tie-free map predicts 16 - 8 - 1 = 7
    assert m.ciou_ceiling(small) == pytest.approx(4 / 7)
    assert m.ciou_ceiling(np.ones((4, 4))) == pytest.approx(7 / 16)
    box = m.gt_map([[0.0, 0.0, 0.1, 0.1]])  # 22 x 22 px vs 25087 predicted
    assert m.ciou_ceiling(box) == pytest.approx(22 * 22 / (224 * 224 - 224 * 112 - 1))
    heat = small + np.linspace(0, 0.1, 16).reshape(4, 4)  # a heatmap shaped like the box reaches the ceiling
    assert m.ciou(heat, small) == pytest.approx(m.ciou_ceiling(small))
    flickr = m.consensus_gt_map([[[0, 0, 0.5, 1]], [[0, 0, 0.25, 1]]], size_px=4)  # 4 px at 1, 4 px at 0.5
    assert m.ciou_ceiling(flickr) == pytest.approx((4 + 3 * 0.5) / 6.0)


def test_heatmap_resize_matches_cv2_inter_linear():
    """The reference resizes with cv2.resize(INTER_LINEAR); avlearn's bilinear upsampling gives the same map."""
    cv2 = pytest.importorskip("cv2")
    from avlearn.embed.heatmap import upsample_heatmap

    grid = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    ours = upsample_heatmap(grid, (224, 224))
    ref = cv2.resize(grid, dsize=(224, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
