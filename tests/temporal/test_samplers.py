"""Invariants of the Shuffle-and-Learn and Odd-One-Out samplers and of the frame cache."""

from __future__ import annotations

import numpy as np
import pytest
from temporal_media import FPS, index_frames

from avlearn.pretext.motion import VideoFrames, choose_window, frame_motion, load_videos, window_scores
from avlearn.pretext.odd_one_out import OddOneOutQuestions, QuestionConfig
from avlearn.pretext.shuffle_learn import AFTER, BEFORE, POSITIVE, ShuffleLearnTuples, TupleConfig, sample_five


def _video(n: int = 120, step_frames: float = 1.0, motion_from: int = 0) -> VideoFrames:
    frames = index_frames(n)
    if motion_from:  # static before motion_from
        frames[:motion_from] = frames[0]
    return VideoFrames("v", "v.mp4", frames, np.arange(n) / FPS * step_frames, step_frames)


def test_five_frame_draw_order_gaps_and_outside_frames() -> None:
    """One draw a < b < c < d < e: window and offsets within tau, c inside with its margin, a and e outside b..d."""
    cfg = TupleConfig(tau_max=30, tau_min=8, middle_margin=0.2, motion_quantile=0.0)
    rng = np.random.default_rng(0)
    offsets = set()
    for n in (120, 90, 40):  # 40 frames: the offsets shrink to tau_min to make room
        v = _video(n)
        for _ in range(200):
            f = sample_five(v, rng, cfg)
            assert f is not None and 0 <= f.a < f.b < f.c < f.d < f.e < n
            assert 8 <= f.d - f.b <= 30 and 8 <= f.b - f.a <= 30 and 8 <= f.e - f.d <= 30
            margin = min(max(1, round(0.2 * (f.d - f.b))), (f.d - f.b) // 2)
            assert f.b + margin <= f.c <= f.d - margin
            assert not f.b <= f.a <= f.d and not f.b <= f.e <= f.d
            offsets.add((f.b - f.a, f.e - f.d))
    assert len(offsets) > 50  # the offsets are drawn, not fixed
    assert sample_five(_video(8 + 8 + 8), rng, cfg) is None  # one frame short of min_length
    assert sample_five(_video(8 + 8 + 8 + 1), rng, cfg) is not None


def test_the_three_tuples_of_a_draw_share_b_and_d() -> None:
    cfg = TupleConfig(tau_max=30, tau_min=8, reverse=True, motion_quantile=0.0)
    tuples = ShuffleLearnTuples([_video(), _video(90)], cfg, seed=3)
    reversed_count = 0
    for j in range(150):
        group = [tuples.tuple(3 * j + r) for r in range(3)]
        assert [t.kind for t in group] == [POSITIVE, BEFORE, AFTER] and [t.label for t in group] == [1, 0, 0]
        draw = group[0].draw
        assert all(t.draw == draw and t.video == draw.video and t.window == (draw.b, draw.d) for t in group)
        for t in group:
            first, mid, last = t.indices
            assert (first, last) == ((draw.d, draw.b) if t.reversed else (draw.b, draw.d))
            assert mid == {POSITIVE: draw.c, BEFORE: draw.a, AFTER: draw.e}[t.kind]
            reversed_count += t.reversed
    assert 150 < reversed_count < 300  # about half of 450 tuples shown backwards


def test_shuffle_learn_is_deterministic_and_balanced_on_request() -> None:
    cfg = TupleConfig(tau_max=30, tau_min=8)
    a, b = ShuffleLearnTuples([_video()], cfg, seed=1, balanced=True), ShuffleLearnTuples([_video()], cfg, seed=1, balanced=True)
    assert [a.tuple(i) for i in range(20)] == [b.tuple(i) for i in range(20)]
    assert [a.tuple(i).label for i in range(6)] == [1, 0, 1, 0, 1, 0]
    assert [a.tuple(i).kind for i in range(1, 8, 2)] == [BEFORE, AFTER, BEFORE, AFTER]  # each draw's negative alternates
    assert a.tuple(0).draw == a.tuple(1).draw and a.tuple(0).draw != a.tuple(2).draw
    b.set_epoch(1)
    assert [a.tuple(i) for i in range(20)] != [b.tuple(i) for i in range(20)]


def test_gaps_are_in_grid_frames_whatever_the_cache_stride() -> None:
    cfg = TupleConfig(tau_max=30, tau_min=8, motion_quantile=0.0)
    tuples = ShuffleLearnTuples([_video(n=60, step_frames=2.0)], cfg, seed=0)  # every 2nd grid frame cached
    for i in range(200):
        f = tuples.tuple(i).draw
        for gap in (f.d - f.b, f.b - f.a, f.e - f.d):
            assert 8 <= gap * 2 <= 30  # 4..15 cached steps = 8..30 grid frames


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


def test_flow_motion_measures_the_moving_square() -> None:
    """Farnebäck flow (motion=flow): zero on still frames, about the square's speed where it moves; cuts still from differences."""
    pytest.importorskip("cv2", reason="opencv-python-headless (avlearn[flow]) is not installed")
    from avlearn.pretext.motion import flow_motion

    frames = np.full((12, 48, 48, 3), 40, np.uint8)
    for i in range(12):  # a textured square moving 2 px per frame from frame 6 on
        x = 8 + 2 * max(0, i - 6)
        frames[i, 16:32, x : x + 16] = 200
        frames[i, 16:32:4, x : x + 16] = 120
    m = flow_motion(frames)
    assert m.shape == (12,) and m.dtype == np.float32
    assert np.all(m[1:7] < 0.05) and np.all(m[8:] > m[1:7].max() + 0.05)
    assert 2 * 16 * 16 / 48**2 < m[9] < 2.0  # between speed x the square's share of the frame and the speed (2 px): flow is smoothed
    v = VideoFrames("f", "f.mp4", frames, np.arange(12) / FPS, 1.0, motion_measure="flow")
    np.testing.assert_allclose(v.motion, m)
    assert not v.cut.any()


def test_flow_without_opencv_is_one_clear_error(monkeypatch) -> None:
    import builtins

    from avlearn.pretext.motion import MissingDependencyError, require_cv2

    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(MissingDependencyError, match=r"pip install 'avlearn\[flow\]'"):
        require_cv2()
    from training.tasks import get_task

    with pytest.raises(ValueError, match="needs OpenCV"):
        get_task("shuffle_learn", {"motion": "flow"})


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
