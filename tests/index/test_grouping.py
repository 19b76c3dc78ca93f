"""Hits grouped per clip over a real FAISS bundle: distinct clips, each clip's best segment, k clips when available."""

from __future__ import annotations

import numpy as np
import pytest

from avlearn.index import Bundle, SegmentMeta, group_by_clip
from avlearn.index.build import build_bundle_from_arrays

CLIPS, SEGMENTS, DIM = 12, 6, 16


@pytest.fixture(scope="module")
def clip_bundle(tmp_path_factory):
    """12 clips x 6 segments: a clip's segments lie close together, so plain top-k repeats one clip."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLIPS, DIM)).astype(np.float32)
    vecs = np.repeat(centres, SEGMENTS, axis=0) + 0.3 * rng.standard_normal((CLIPS * SEGMENTS, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(CLIPS * SEGMENTS, dtype=np.int64) + 100
    metas = [SegmentMeta(int(i), f"clip{(i - 100) // SEGMENTS:02d}", f"/data/clip{(i - 100) // SEGMENTS:02d}.mp4", float((i - 100) % SEGMENTS)) for i in ids]
    out = build_bundle_from_arrays(tmp_path_factory.mktemp("grouping") / "bundle", {"image": (ids, vecs)}, metas, factory="Flat", queries=8)
    with Bundle.open(out) as b:
        stored = np.stack([b.vector("image", int(i)) for i in ids])  # float16 on disk: brute force on what FAISS searches
    return out, ids, stored, centres


def _best_per_clip(query: np.ndarray, ids: np.ndarray, vecs: np.ndarray) -> list[tuple[str, int, float]]:
    """Brute force: every clip's best segment (clip, id, cosine), best clip first."""
    q = query / np.linalg.norm(query)
    sims = vecs @ q
    best = []
    for c in range(CLIPS):
        rows = np.arange(c * SEGMENTS, (c + 1) * SEGMENTS)
        r = rows[np.argmax(sims[rows])]
        best.append((f"clip{c:02d}", int(ids[r]), float(sims[r])))
    return sorted(best, key=lambda t: -t[2])


@pytest.mark.parametrize("fetch_factor", [4, 1])  # 1: the first fetch holds one clip only, so the search must go deeper
def test_search_clips_returns_each_clips_best_segment(clip_bundle, fetch_factor):
    path, ids, vecs, centres = clip_bundle
    with Bundle.open(path) as b:
        plain = b.search("image", centres[3], 5)[0]
        assert len({h.clip_id for h in plain}) == 1  # ungrouped: five segments of one clip
        got = b.search_clips("image", centres[[3, 7]], 5, fetch_factor=fetch_factor)
    for row, q in zip(got, centres[[3, 7]]):
        want = _best_per_clip(q, ids, vecs)[:5]
        assert [h.clip_id for h in row] == [c for c, _, _ in want]  # distinct clips, in order of their best segment
        assert [h.segment_id for h in row] == [i for _, i, _ in want]  # each clip's best segment
        np.testing.assert_allclose([h.score for h in row], [s for _, _, s in want], atol=2e-3)  # float16 stored vectors


def test_search_clips_k_and_exclusion(clip_bundle):
    path, ids, vecs, centres = clip_bundle
    with Bundle.open(path) as b:
        assert len(b.search_clips("image", centres[0], CLIPS)[0]) == CLIPS  # k clips when available
        everything = b.search_clips("image", centres[0], CLIPS + 5)[0]  # more than there are: all of them, once each
        assert sorted(h.clip_id for h in everything) == [f"clip{c:02d}" for c in range(CLIPS)]
        own_left_out = b.search_clips("image", centres[0], 3, exclude_clips=[{"clip00"}])[0]
        with pytest.raises(ValueError):
            b.search_clips("image", centres[:2], 3, exclude_clips=[set()])
    assert "clip00" not in [h.clip_id for h in own_left_out] and len(own_left_out) == 3
    assert [h.clip_id for h in own_left_out] == [c for c, _, _ in _best_per_clip(centres[0], ids, vecs)[1:4]]


def test_group_by_clip_keeps_the_first_hit_of_each_clip(clip_bundle):
    path, _, _, centres = clip_bundle
    with Bundle.open(path) as b:
        hits = b.search("image", centres[5], CLIPS * SEGMENTS)[0]
    grouped = group_by_clip(hits, 4)
    assert len(grouped) == 4 and len({h.clip_id for h in grouped}) == 4
    for g in grouped:
        assert g == next(h for h in hits if h.clip_id == g.clip_id)
