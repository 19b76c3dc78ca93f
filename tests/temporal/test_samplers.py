"""Invariants of the Shuffle-and-Learn and Odd-One-Out samplers and of the frame cache."""

from __future__ import annotations

import numpy as np
import pytest
from temporal_media import FPS, index_frames

from avlearn.pretext.motion import VideoFrames, choose_window, frame_motion, load_videos, window_scores
from avlearn.pretext.odd_one_out import OddOneOutQuestions, QuestionConfig
from avlearn.pretext.shuffle_learn import AFTER, BEFORE, POSITIVE, ShuffleLearnTuples, TupleConfig


def _video(n: int = 120, step_frames: float = 1.0, motion_from: int = 0) -> VideoFrames:
    frames = index_frames(n)
    if motion_from:  # static before motion_from
        frames[:motion_from] = frames[0]
    return VideoFrames("v", "v.mp4", frames, np.arange(n) / FPS * step_frames, step_frames)


def test_shuffle_learn_tuples_respect_order_and_gaps() -> None:
    cfg = TupleConfig(tau_max=30, tau_min=8, positive_fraction=0.5, reverse=True, middle_margin=0.2, motion_quantile=0.0)
    tuples = ShuffleLearnTuples([_video(), _video(90)], cfg, seed=3)
    kinds = {POSITIVE: 0, BEFORE: 0, AFTER: 0}
    for i in range(400):
        t = tuples.tuple(i)
        kinds[t.kind] += 1
        n = len(tuples.videos[t.video])
        first, mid, last = t.indices
        assert all(0 <= x < n for x in t.indices)
        b, d = t.window
        assert (first, last) == ((d, b) if t.reversed else (b, d))
        assert 2 <= d - b <= cfg.tau_max
        if t.kind == POSITIVE:
            assert t.label == 1
            margin = max(1, round(cfg.middle_margin * (d - b)))
            assert b + min(margin, (d - b) // 2) <= mid <= d - min(margin, (d - b) // 2)
        else:  # the negative's middle frame lies outside the window, tau_min..tau_max away
            assert t.label == 0
            dist = b - mid if t.kind == BEFORE else mid - d
            assert mid < b if t.kind == BEFORE else mid > d
            assert cfg.tau_min <= dist <= cfg.tau_max
    assert kinds[BEFORE] > 50 and kinds[AFTER] > 50 and 150 < kinds[POSITIVE] < 250


def test_shuffle_learn_is_deterministic_and_balanced_on_request() -> None:
    cfg = TupleConfig(tau_max=30, tau_min=8)
    a, b = ShuffleLearnTuples([_video()], cfg, seed=1, balanced=True), ShuffleLearnTuples([_video()], cfg, seed=1, balanced=True)
    assert [a.tuple(i) for i in range(20)] == [b.tuple(i) for i in range(20)]
    assert [a.tuple(i).label for i in range(6)] == [1, 0, 1, 0, 1, 0]
    b.set_epoch(1)
    assert [a.tuple(i) for i in range(20)] != [b.tuple(i) for i in range(20)]


def test_gaps_are_in_grid_frames_whatever_the_cache_stride() -> None:
    cfg = TupleConfig(tau_max=30, tau_min=8, motion_quantile=0.0)
    tuples = ShuffleLearnTuples([_video(n=60, step_frames=2.0)], cfg, seed=0)  # every 2nd grid frame cached
    for i in range(200):
        t = tuples.tuple(i)
        b, d = t.window
        assert (d - b) * 2 <= cfg.tau_max
        if t.kind != POSITIVE:
            dist = b - t.indices[1] if t.kind == BEFORE else t.indices[1] - d
            assert cfg.tau_min <= dist * 2 + 1 and dist * 2 <= cfg.tau_max + 1


def test_too_short_videos_are_refused() -> None:
    with pytest.raises(ValueError, match="long enough"):
        ShuffleLearnTuples([_video(n=10)], TupleConfig(tau_max=30, tau_min=8), seed=0)


def test_windows_come_from_high_motion_and_never_cross_cuts() -> None:
    v = _video(n=120, motion_from=60)  # static first half
    rng = np.random.default_rng(0)
    starts = [choose_window(v, 0, 100, 19, rng, quantile=0.5) for _ in range(200)]
    assert min(starts) >= 41  # windows [s, s+19] that touch the static half score lower
    frames = index_frames(80)
    frames[40:] = 255 - frames[40:]  # a hard cut at 40
    cut = VideoFrames("c", "c.mp4", frames, np.arange(80) / FPS, 1.0)
    assert cut.cut[40] and cut.cut.sum() == 1
    scores = window_scores(cut, np.arange(0, 60), 10)
    assert np.isneginf(scores[30:40]).all() and np.isfinite(scores[:30]).all() and np.isfinite(scores[40:]).all()
    for _ in range(100):
        s = choose_window(cut, 0, 60, 10, rng, quantile=0.0)
        assert s + 10 < 40 or s >= 40


def test_frame_motion_is_the_mean_grey_difference() -> None:
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1] = 10
    frames[2] = 40
    assert frame_motion(frames).tolist() == [10.0, 10.0, 30.0]


def test_odd_one_out_questions_have_exactly_one_shuffled_subsequence() -> None:
    cfg = QuestionConfig(num_questions=6, frames_per_subsequence=4, gap=3, motion_quantile=0.0)
    qs = OddOneOutQuestions([_video(), _video(50)], cfg, seed=2)
    odd_positions = []
    for i in range(300):
        q = qs.question(i)
        assert len(q.subsequences) == 6 and all(len(s) == 4 for s in q.subsequences)
        for pos, sub in enumerate(q.subsequences):
            increasing = all(b - a == 3 for a, b in zip(sub, sub[1:]))
            assert increasing == (pos != q.odd), (pos, q.odd, sub)
            assert all(0 <= x < len(qs.videos[q.video]) for x in sub)
        odd = q.subsequences[q.odd]
        assert sorted(odd) == [min(odd) + 3 * j for j in range(4)]  # the same frames, only reordered
        assert tuple(sorted(odd)[p] for p in q.permutation) == odd
        odd_positions.append(q.odd)
    counts = np.bincount(odd_positions, minlength=6)
    assert counts.min() > 25


def test_odd_one_out_spread_keeps_subsequences_near_one_anchor() -> None:
    """spread > 0: all N starts lie within `spread` grid frames; one subsequence is still the only shuffled one."""
    cfg = QuestionConfig(num_questions=6, frames_per_subsequence=4, gap=3, motion_quantile=0.0, spread=10)
    qs = OddOneOutQuestions([_video(), _video(20)], cfg, seed=3)  # the 20-frame video leaves room for a spread of 10
    widths = []
    for i in range(200):
        q = qs.question(i)
        starts = [min(s) for s in q.subsequences]
        widths.append(max(starts) - min(starts))
        assert max(starts) - min(starts) <= 10 and all(max(s) < len(qs.videos[q.video]) for s in q.subsequences)
        for pos, sub in enumerate(q.subsequences):
            assert all(b - a == 3 for a, b in zip(sub, sub[1:])) == (pos != q.odd)
    assert max(widths) >= 8  # the starts really spread over the window
    short = OddOneOutQuestions([_video(12)], cfg, seed=0)  # 12 frames: span 9, so the spread shrinks to 2
    assert all(max(min(s) for s in short.question(i).subsequences) <= 2 for i in range(50))
    with pytest.raises(ValueError, match="spread"):
        QuestionConfig(spread=-1)


def test_frame_cache_reads_the_video_grid_in_order(index_videos) -> None:
    videos, skipped = load_videos(index_videos / "videos", size_px=(32, 32))
    assert not skipped and len(videos) == 2
    v = videos[0]
    assert len(v) == 100 and v.step_frames == 1.0
    np.testing.assert_allclose(v.times_sec, np.arange(100) / FPS, atol=1e-6)
    grey = v.frames[:, 20:, :, :].astype(float).mean(axis=(1, 2, 3))  # below the moving square
    np.testing.assert_allclose(grey, 2 * np.arange(100), atol=4)  # frame i is grid frame i
    strided, _ = load_videos(index_videos / "videos", size_px=(16, 16), stride=3, max_videos=1)
    assert len(strided) == 1 and strided[0].step_frames == 3.0 and strided[0].frames.shape[1:] == (16, 16, 3)
    np.testing.assert_allclose(strided[0].times_sec, np.arange(len(strided[0])) * 3 / FPS, atol=1e-6)


def test_bad_files_are_skipped_not_fatal(index_videos, tmp_path) -> None:
    import shutil

    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(index_videos / "videos" / "idx0.mp4", folder / "good.mp4")
    (folder / "bad.mp4").write_bytes(b"not a video at all")
    videos, skipped = load_videos(folder, size_px=(16, 16))
    assert [v.clip_id for v in videos] == ["good.mp4"] and len(skipped) == 1


def test_frame_cache_from_prepared_shards(index_videos, tmp_path) -> None:
    from avlearn.data.prepare import prepare

    shards = tmp_path / "shards"
    prepare(index_videos / "videos", shards, workers=1, frame_size_px=32, frames_per_segment=5, progress=False)
    videos, _ = load_videos(shards, size_px=(32, 32))
    assert len(videos) == 2
    v = videos[0]
    assert v.step_frames == pytest.approx(FPS * 1.0 / 5)  # 5 frames per 1 s segment of a 25 fps video
    assert len(v) == 20 and np.all(np.diff(v.times_sec) > 0)
    grey = v.frames[:, 20:].astype(float).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey, 2 * 5 * np.arange(20), atol=6)  # every 5th grid frame, in order
