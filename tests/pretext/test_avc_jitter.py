"""Temporal jitter of AVC pairs: start candidates on the clip's frame grid, audio aligned to the frame,
negatives matched on position class and candidate, one decode path and one table for both labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.data.segments import iter_segment_records
from avlearn.media import read_audio, read_frames, read_segments
from avlearn.pretext.avc import (
    FIRST,
    INTERIOR,
    LAST,
    NEGATIVE,
    ONLY,
    POSITIVE,
    CorrespondencePairs,
    position_class,
    record_slot,
    stream_pairs,
)
from avlearn.pretext.avc_datasets import InMemoryAVC, decode_records

FPS = 25  # the synthetic world's frame rate
SIZE = (32, 32)


@pytest.fixture(scope="module")
def jittered(tiny_world):
    """The tiny world's training split decoded with 4 start candidates per 1 s slot."""
    src = str(tiny_world / "splits" / "train.csv")
    return src, decode_records(src, size_px=SIZE, sample_rate_hz=16000, segment_sec=1.0, hop_sec=0.25)


def test_position_class():
    assert [position_class(s, 3) for s in range(4)] == [FIRST, INTERIOR, INTERIOR, LAST]
    assert position_class(0, 0) == ONLY
    assert position_class(5, None) == INTERIOR  # last slot unknown (old shards): never "last"


def test_sampled_starts_lie_on_the_frame_grid_with_the_audio_at_the_frame(jittered):
    src, recs = jittered
    pairs = CorrespondencePairs(recs, seed=0, per_slot=4)
    assert pairs.n < len(recs) and len(pairs) == 2 * pairs.n  # an epoch anchors each 1 s slot once
    used = sorted({k for e in range(3) for p in pairs.epoch_pairs(e) for k in (p.frame_idx, p.audio_idx)})
    starts = np.array([recs[k].start_sec for k in used])
    assert np.allclose(starts * FPS, np.round(starts * FPS), atol=1e-6)  # every start is a frame time
    off_second = np.abs(starts - np.round(starts)) > 0.1
    assert off_second.mean() > 0.3  # not only the 1 s grid
    assert {int(pairs.cand[k]) for k in used} == {0, 1, 2, 3}
    # the chosen frame and the audio from exactly that frame's timestamp
    for k in [u for u, off in zip(used, off_second) if off][:4]:
        r = recs[k]
        assert np.array_equal(read_frames(r.path, [r.start_sec], SIZE).images[0], r.frame)
        np.testing.assert_allclose(read_audio(r.path, r.start_sec, 1.0, 16000), r.audio, atol=1e-4)


def test_negatives_share_the_positive_position_class_and_candidate(jittered):
    _, recs = jittered
    pairs = CorrespondencePairs(recs, seed=0, per_slot=4)
    seen = set()
    for e in range(4):
        for p in pairs.epoch_pairs(e):
            if p.kind == POSITIVE:
                assert p.audio_idx == p.frame_idx
                continue
            assert p.kind == NEGATIVE and recs[p.audio_idx].clip_id != recs[p.frame_idx].clip_id
            assert pairs.position[p.audio_idx] == pairs.position[p.frame_idx]
            assert pairs.cand[p.audio_idx] == pairs.cand[p.frame_idx]
            seen.add(str(pairs.position[p.frame_idx]))
    assert seen == {FIRST, INTERIOR, LAST}  # 3 s clips: slots 0, 1, 2


def test_stream_pairs_match_position_from_last_index(tiny_world):
    recs = list(iter_segment_records(str(tiny_world / "splits" / "train.csv"), size_px=SIZE, hop_sec=0.25))
    assert all(r.last_index == max(q.index for q in recs if q.clip_id == r.clip_id) for r in recs)
    negs = [p for p in stream_pairs(iter(recs), seed=0, buffer_size=64, per_slot=4) if p.label == 0]
    keys = [(record_slot(p.frame, 4)[1:], record_slot(p.audio, 4)[1:]) for p in negs]
    assert all(p.audio.clip_id != p.frame.clip_id for p in negs)
    # a buffer of 64 holds ~7 clips: the class nearly always matches, the candidate mostly (the match widens
    # when no other buffered clip has it; unmatched pairing would agree on the class ~40% of the time)
    assert np.mean([a[1] == b[1] for a, b in keys]) > 0.95 and np.mean([a == b for a, b in keys]) > 0.85
    assert {a[1] for a, _ in keys} == {FIRST, INTERIOR, LAST}


def test_both_labels_read_one_table_from_one_decode_function(jittered, tiny_world):
    from avlearn.embed.preprocess import Preprocessor
    from avlearn.models import create_model

    _, recs = jittered
    pre_cfg = create_model("ave_net", "test_tiny").preprocessing
    ds = InMemoryAVC(recs, pre_cfg, seed=0, augment=True, hard_negatives=0.0, fixed=False, jitter=4)
    pre = Preprocessor.from_config(pre_cfg)
    for i in range(0, 40):
        p = ds.pairs.pair(i)
        assert torch.equal(ds[i]["audio"], ds.specs[p.audio_idx])  # positive or negative: the same table
    assert torch.allclose(ds.specs[:8], pre.audio(np.stack([r.audio for r in recs[:8]])))
    # the table's records are what the one segment reader gives for that clip
    clip = [r for r in recs if r.clip_id == recs[0].clip_id]
    segs = read_segments(recs[0].path, size_px=SIZE, sample_rate_hz=16000, hop_sec=0.25)
    assert [s.start_sec for s in segs] == [r.start_sec for r in clip]
    assert all(np.array_equal(s.audio, r.audio) and np.array_equal(s.frame, r.frame) for s, r in zip(segs, clip))


def test_jitter_option_and_shards(tiny_world, tmp_path, capsys):
    from avlearn.cli import main as cli_main
    from avlearn.data.prepare import prepare
    from training.tasks import get_task

    assert get_task("avc", {}).opts.jitter == "auto" and get_task("avc", {"jitter": "3"}).opts.jitter == 3
    with pytest.raises(ValueError, match="jitter"):
        get_task("avc", {"jitter": "0"})
    src = str(tiny_world / "splits" / "train.csv")
    fine = tmp_path / "fine"
    prepare(src, fine, workers=1, frame_size_px=64, clips_per_shard=4, hop_sec=0.25, progress=False)
    task = get_task("avc", {"buffer": "32"})
    model = task.build_model("test_tiny")
    ds = task.make_dataset(str(fine), model, split="train", seed=0)
    assert isinstance(ds, torch.utils.data.IterableDataset) and ds.jitter == 4  # auto: the shards' own hop
    labels = [int(it["label"]) for it in ds]
    assert len(labels) > 2 * 30 and abs(sum(labels) - len(labels) / 2) <= 1
    with pytest.raises(ValueError, match="--hop-sec 0.5"):
        get_task("avc", {"jitter": "2"}).make_dataset(str(fine), model, split="train", seed=0)
    coarse = tmp_path / "coarse"
    prepare(src, coarse, workers=1, frame_size_px=64, clips_per_shard=4, progress=False)
    capsys.readouterr()
    argv = ["train", "avc", "--data", str(coarse), "--out", str(tmp_path / "r"), "--steps", "1", "--preset", "test_tiny", "--set", "jitter=4"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hop-sec 0.25" in err[0] and "jitter=1" in err[0]
