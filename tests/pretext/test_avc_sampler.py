"""AVC pairs: balance, determinism, hard negatives, streaming, and the matched-negative rule."""

from __future__ import annotations

import numpy as np
import pytest

from avlearn.data.segments import SegmentRecord, load_segment_records
from avlearn.pretext.avc import HARD_NEGATIVE, NEGATIVE, POSITIVE, CorrespondencePairs, stream_pairs


def _records(videos: int = 4, per_video: int = 6) -> list[SegmentRecord]:
    rng = np.random.default_rng(0)
    out = []
    for v in range(videos):
        for k in range(per_video):
            out.append(
                SegmentRecord(
                    clip_id=f"v{v}",
                    path=f"v{v}.mp4",
                    index=k,
                    start_sec=float(k),
                    frame=np.zeros((4, 4, 3), np.uint8),
                    audio=rng.normal(size=160).astype(np.float32),
                    sample_rate_hz=160,
                )
            )
    return out


def test_pairs_balanced_deterministic_and_from_other_videos():
    recs = _records()
    pairs = CorrespondencePairs(recs, seed=1)
    ep0 = pairs.epoch_pairs(0)
    assert len(ep0) == 2 * len(recs)
    assert sum(p.label for p in ep0) == len(recs)  # exactly 50/50
    assert {p.frame_idx for p in ep0} == set(range(len(recs)))  # every segment anchors a pair
    for p in ep0:
        same_clip = recs[p.frame_idx].clip_id == recs[p.audio_idx].clip_id
        if p.kind == POSITIVE:
            assert p.audio_idx == p.frame_idx and p.label == 1
        else:
            assert p.kind == NEGATIVE and not same_clip and p.label == 0
    assert ep0 == pairs.epoch_pairs(0)  # a pure function of (seed, epoch, i)
    assert ep0 != pairs.epoch_pairs(1)
    assert ep0 != CorrespondencePairs(recs, seed=2).epoch_pairs(0)


def test_hard_negatives_same_video_far_away():
    recs = _records()
    pairs = CorrespondencePairs(recs, seed=0, hard_negatives=1.0, min_gap_sec=2.0)
    negs = [p for p in pairs.epoch_pairs(0) if p.label == 0]
    assert negs and all(p.kind == HARD_NEGATIVE for p in negs)
    for p in negs:
        a, b = recs[p.frame_idx], recs[p.audio_idx]
        assert a.clip_id == b.clip_id and abs(a.start_sec - b.start_sec) >= 2.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="two videos"):
        CorrespondencePairs(_records(videos=1))
    recs = _records()
    recs[0].audio = None
    with pytest.raises(ValueError, match="audio"):
        CorrespondencePairs(recs)


def test_stream_pairs_balanced():
    recs = _records(videos=6, per_video=5)
    out = list(stream_pairs(iter(recs), seed=0, buffer_size=12))
    labels = [p.label for p in out]
    assert abs(sum(labels) - (len(labels) - sum(labels))) <= 1
    assert len(out) >= len(recs) - 3  # only a few drained anchors may be dropped
    anchors = [(p.frame.clip_id, p.frame.index) for p in out]
    assert len(set(anchors)) == len(anchors)  # each record anchors at most one pair
    for p in out:
        if p.label == 1:
            assert p.audio is p.frame
        else:
            assert p.audio.clip_id != p.frame.clip_id
    hard = list(stream_pairs(iter(recs), seed=0, buffer_size=30, hard_negatives=1.0))
    assert any(p.kind == HARD_NEGATIVE for p in hard)
    assert all(abs(p.frame.start_sec - p.audio.start_sec) >= 2.0 for p in hard if p.kind == HARD_NEGATIVE)


# ---------------------------------------------------------------- the matched-negative rule

FPS = 25.0


def _low_level_cues(wave: np.ndarray, start_sec: float, sr: int) -> list[float]:
    """Cues a network could exploit without understanding content: grid phase, level, spectral shape."""
    import librosa

    phase = (start_sec * FPS) % 1.0
    rms = float(np.sqrt(np.mean(wave**2)) + 1e-9)
    centroid = librosa.feature.spectral_centroid(y=wave, sr=sr, n_fft=512, hop_length=160)[0]
    flatness = librosa.feature.spectral_flatness(y=wave, n_fft=512, hop_length=160)[0]
    return [min(phase, 1 - phase), np.log(rms), centroid.mean(), centroid.std(), flatness.mean(), flatness.std()]


def _probe_accuracy(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Held-out accuracy of a probe; folds split by the audio's video, as every segment's audio
    appears once as a positive and about once as a negative (a shared fold would let the probe
    memorise one and mispredict the other)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    clf = GradientBoostingClassifier(n_estimators=60, max_depth=2, random_state=0)
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(clf, features, labels, groups=groups, cv=cv).mean())


def test_probe_cannot_tell_matched_negatives_but_catches_off_grid_ones(probe_world):
    from avlearn.media import read_audio

    sr = 16000
    recs = load_segment_records(probe_world / "labels.csv" if (probe_world / "labels.csv").exists() else probe_world, sample_rate_hz=sr, hop_sec=0.5)
    assert len(recs) >= 80
    pairs = CorrespondencePairs(recs, seed=0).epoch_pairs(0)
    labels = np.array([p.label for p in pairs])
    groups = np.array([hash(recs[p.audio_idx].clip_id) for p in pairs])
    ours = np.array([_low_level_cues(recs[p.audio_idx].audio, recs[p.audio_idx].start_sec, sr) for p in pairs])
    acc_ours = _probe_accuracy(ours, labels, groups)

    # A deliberately broken sampler: negatives' audio cut at arbitrary times (off the frame grid),
    # through another decode call; positives unchanged.
    rng = np.random.default_rng(0)
    broken = []
    for p in pairs:
        a = recs[p.audio_idx]
        if p.label == 1:
            broken.append(_low_level_cues(a.audio, a.start_sec, sr))
        else:
            start = a.start_sec + rng.uniform(0.005, 0.035)
            broken.append(_low_level_cues(read_audio(a.path, start, 1.0, sr), start, sr))
    acc_broken = _probe_accuracy(np.array(broken), labels, groups)
    print(f"probe accuracy: matched negatives {acc_ours:.3f}, off-grid negatives {acc_broken:.3f}")
    assert 0.38 < acc_ours < 0.62, acc_ours
    assert acc_broken > 0.9, acc_broken
