"""The segment-record reader: raw sources and shard dirs agree; splits over workers/ranks have no duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avlearn.data.prepare import prepare
from avlearn.data.segments import iter_segment_records, load_segment_records
from avlearn.testing import make_tone_video


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    for i in range(3):
        make_tone_video(root / f"v{i}.mp4", seconds=2.0 + i, size=(64, 96), freq_hz=300 + 200 * i)
    (root / "bad.mp4").write_text("not a video")
    (root / "labels.csv").write_text("path,label,visible\nv0.mp4,dog,dog;cat\nv1.mp4,cat,cat\n")
    return root


@pytest.fixture(scope="module")
def shards(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "s"
    prepare(world, out, workers=2, clips_per_shard=1, frame_size_px=32, progress=False)
    return out


def _by_key(records):
    out = {}
    for r in records:
        assert r.key not in out, f"duplicate {r.key}"
        out[r.key] = r
    return out


def test_raw_and_shards_agree(world, shards):
    raw = _by_key(iter_segment_records(world, size_px=(64, 96)))  # bad.mp4: logged and skipped
    shard = _by_key(iter_segment_records(shards, size_px=(64, 96)))
    assert set(raw) == set(shard) and len(raw) == 2 + 3 + 4
    for key, a in raw.items():
        b = shard[key]
        assert (a.clip_id, a.index, a.labels, a.visible, a.sample_rate_hz) == (b.clip_id, b.index, b.labels, b.visible, b.sample_rate_hz)
        assert a.start_sec == pytest.approx(b.start_sec, abs=1e-9)
        assert a.frame.shape == b.frame.shape == (64, 96, 3)
        assert np.abs(a.frame.astype(int) - b.frame.astype(int)).mean() < 3.0  # JPEG + resize error only
        assert a.audio.shape == b.audio.shape == (16000,)
        assert np.abs(a.audio - b.audio).max() < 2e-4  # 16-bit FLAC quantisation
    assert raw[("v0.mp4", 0)].labels == ("dog",) and raw[("v0.mp4", 0)].visible == ("dog", "cat")
    # the frame on screen at 1.0 s is frame 25 of 25 fps: pixel value 75 (both paths)
    assert abs(int(shard[("v0.mp4", 1)].frame.mean()) - 75) <= 2 and abs(int(raw[("v0.mp4", 1)].frame.mean()) - 75) <= 2


def test_shards_resample_and_native_size(world, shards):
    raw = _by_key(iter_segment_records(world, sample_rate_hz=8000))
    shard = _by_key(iter_segment_records(shards, sample_rate_hz=8000))
    for key, a in raw.items():
        b = shard[key]
        assert b.audio.shape == (8000,) and b.sample_rate_hz == 8000
        assert np.abs(a.audio - b.audio)[200:-200].max() < 0.02  # two resamplers, same tone
        assert b.frame.shape == (32, 48, 3) and a.frame.shape == (64, 96, 3)  # stored size vs native


def test_shard_parameters_checked(shards):
    with pytest.raises(ValueError, match="segment_sec"):
        next(iter_segment_records(shards, segment_sec=0.5))
    with pytest.raises(ValueError, match="frame"):
        next(iter_segment_records(shards, frames_per_segment=3))


def test_frames_per_segment(tmp_path, world):
    out = tmp_path / "r2"
    prepare(world, out, workers=1, clips_per_shard=4, frame_size_px=32, frames_per_segment=2, audio_format="f16", progress=False)
    recs = load_segment_records(out)
    assert len(recs) == 9 and all(r.frames.shape == (2, 32, 48, 3) for r in recs)
    r = next(r for r in recs if r.key == ("v0.mp4", 0))
    assert abs(int(r.frames[1].mean()) - (3 * 12) % 256) <= 2  # frame at 0.5 s = frame 12
    raw = _by_key(iter_segment_records(world, frames_per_segment=2, size_px=(32, 48)))
    assert np.abs(raw[("v0.mp4", 0)].frames.astype(int) - r.frames.astype(int)).mean() < 3.0
    single = load_segment_records(out, frames_per_segment=1)
    assert all(s.frames is None for s in single)


def test_shuffle_is_seeded(shards):
    a = [r.key for r in iter_segment_records(shards, shuffle=True, seed=1, buffer_size=4)]
    b = [r.key for r in iter_segment_records(shards, shuffle=True, seed=1, buffer_size=4)]
    c = [r.key for r in iter_segment_records(shards, shuffle=True, seed=2, buffer_size=4)]
    plain = [r.key for r in iter_segment_records(shards)]
    assert a == b and sorted(a) == sorted(c) == sorted(plain) and len(set(a)) == len(a)
    assert a != plain or c != plain


def test_ddp_slices_partition(shards, world):
    for src in (shards, world):
        full = {r.key for r in iter_segment_records(src)}
        for world_size in (2, 4):  # 3 units: by unit for 2 readers, by record for 4
            parts = [[r.key for r in iter_segment_records(src, shard_slice=(k, world_size), shuffle=True, seed=3)] for k in range(world_size)]
            flat = [k for p in parts for k in p]
            assert len(flat) == len(set(flat)) and set(flat) == full
            if src == shards:
                assert all(parts)  # 3 shards: whole shards for 2 readers, every 4th record for 4


class _Records:
    """A torch IterableDataset over segment records (what a trainer would wrap)."""

    def __new__(cls, src, **kw):
        import torch.utils.data as tud

        class DS(tud.IterableDataset):
            def __iter__(self):
                return (r.key for r in iter_segment_records(src, **kw))

        return DS()


@pytest.mark.parametrize("which", ["shards", "raw"])
def test_dataloader_two_workers_no_duplicates(which, shards, world):
    import torch.utils.data as tud

    src = shards if which == "shards" else world
    full = sorted(r.key for r in iter_segment_records(src))
    for rank in range(2):
        ds = _Records(src, shard_slice=(rank, 2), shuffle=True, seed=5)
        loader = tud.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=lambda x: x)
        keys = [tuple(k) for k in loader]
        assert len(keys) == len(set(keys))
        if rank == 0:
            got = keys
        else:
            got += keys
    assert sorted(got) == full
