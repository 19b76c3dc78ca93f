"""avlearn prepare --kind frames: each clip stored once as JPEG frames on its grid; done records, resume, errors.jsonl;
the epoch split over ranks and workers; the shard streams visit every sequence per epoch with a bounded number of shards held."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.data.frame_shards import SequenceRef, read_sequences, sequence_refs, split_epoch, split_workers
from avlearn.data.prepare import PrepareConfigMismatch, prepare
from avlearn.data.shards import iter_tar_samples, read_done_records

FPS = 25


def _index_video(path: Path, n: int, size: int = 32) -> None:
    """n frames at 25 fps; frame i has grey level 2i (decodable index)."""
    from avlearn.media.writer import write_video

    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i] = 2 * i
    write_video(path, iter(frames), FPS)


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory) -> Path:
    """Five index videos of 40-60 frames, and a broken file."""
    root = tmp_path_factory.mktemp("frames_src")
    for k in range(5):
        _index_video(root / f"v{k}.mp4", 40 + 5 * k)
    (root / "broken.mp4").write_text("not a video\n" * 10)
    return root


def test_prepare_frames_layout_resume_and_errors(tmp_path, index_folder):
    out = tmp_path / "fs"
    summary = prepare(index_folder, out, kind="frames", fps=12.5, short_px=16, clips_per_shard=2, workers=2, progress=False)
    assert summary["clips"] == 6 and summary["clips_ok"] == 5 and summary["sequences"] == 5 and summary["accounted"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in errors] == ["broken.mp4"] and errors[0]["error"] == "CorruptMedia"
    assert json.loads((out / "prepare.json").read_text())["params"]["kind"] == "frames"
    refs = sequence_refs(out)
    assert [r.clip_id for r in refs] == [f"v{k}.mp4" for k in range(5)] and len({r.shard for r in refs}) == 3
    assert all(r.step_frames == 2 and r.native_fps == FPS for r in refs)
    assert [r.frames for r in refs] == [(40 + 5 * k) // 2 for k in range(5)] and summary["frames"] == sum(r.frames for r in refs)
    for shard in sorted({r.shard for r in refs}):
        samples = list(iter_tar_samples(out / shard))
        assert len(samples) == len([r for r in refs if r.shard == shard])  # one sample per clip
        for clip_id, frames, times, meta in read_sequences(out, shard):
            assert meta["clip_id"] == clip_id and frames.shape[1:] == (16, 16, 3) and len(frames) == len(times) == len(meta["times_sec"])
            np.testing.assert_allclose(times, np.arange(len(frames)) * 2 / FPS, atol=1e-3)  # every 2nd grid frame
            grey = frames.reshape(len(frames), -1).mean(axis=1)
            np.testing.assert_allclose(grey, 4 * np.arange(len(frames)), atol=3)  # the frame on screen at each time
    again = prepare(index_folder, out, kind="frames", fps=12.5, short_px=16, clips_per_shard=2, progress=False)
    assert again["shards_skipped"] == 3 and again["new_sequences"] == 0 and again["sequences"] == 5
    (out / read_done_records(out)[1]["shard"].replace(".tar", ".done.json")).unlink()  # a group left unfinished
    redo = prepare(index_folder, out, kind="frames", fps=12.5, short_px=16, clips_per_shard=2, progress=False)
    assert redo["shards_skipped"] == 2 and redo["new_sequences"] == 2 and sequence_refs(out) == refs
    with pytest.raises(PrepareConfigMismatch, match="fps"):
        prepare(index_folder, out, kind="frames", fps=5.0, short_px=16, clips_per_shard=2, progress=False)


def test_cli_prepare_frames(tmp_path, index_folder, capsys):
    from avlearn.cli import main

    assert (
        main(["prepare", "--data", str(index_folder), "--out", str(tmp_path / "fs"), "--kind", "frames", "--fps", "0", "--short-px", "16", "--no-progress"])
        == 0
    )
    refs = sequence_refs(tmp_path / "fs")
    assert len(refs) == 5 and all(r.step_frames == 1 for r in refs) and refs[0].frames == 40  # fps 0: every frame


def _refs(per_shard: list[int]) -> list[SequenceRef]:
    refs = []
    for s, n in enumerate(per_shard):
        for _ in range(n):
            refs.append(SequenceRef(len(refs), f"shard-{s:06d}.tar", f"c{len(refs)}", 50, 1.0))
    return refs


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_split_epoch_deals_every_sequence_once(world_size):
    refs = _refs([3, 2, 4, 1])  # 10 sequences
    for epoch in range(2):
        parts = [split_epoch(refs, seed=1, epoch=epoch, rank=r, world_size=world_size) for r in range(world_size)]
        assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-10 // world_size)  # equal steps per rank
        firsts = Counter(ref.uid for p in parts for ref, copy in p if copy == 0)
        assert firsts == Counter(range(10))  # each sequence exactly once as a first copy
        assert sum(copy > 0 for p in parts for _, copy in p) == len(parts[0]) * world_size - 10  # repeats fill the short parts
        for p in parts:  # a rank reads a contiguous run of shards
            shards = [ref.shard for ref, _ in p]
            assert all(shards.index(s) == i or shards[i - 1] == s for i, s in enumerate(shards))
    orders = {tuple(r.shard for r, _ in split_epoch(refs, seed=1, epoch=e, rank=0, world_size=1)) for e in range(6)}
    assert len(orders) > 1  # shard order changes with the epoch
    assert sorted(x for w in range(3) for x in split_workers(list(range(10)), w, 3)) == list(range(10))


@pytest.fixture(scope="module")
def frame_world(tmp_path_factory, index_folder) -> Path:
    out = tmp_path_factory.mktemp("fw") / "shards"
    prepare(index_folder, out, kind="frames", fps=12.5, short_px=16, clips_per_shard=1, progress=False)
    return out


def _colour_stream(src, refs, **kw):
    from avlearn.pretext.colorization import ColorizationStream

    return ColorizationStream(
        str(src), refs, split="train", num_frames=3, size_px=(16, 16), frame_step_sec=0.08, short_px=16, per_sequence=3, seed=0, **kw
    )  # fmt: skip


def test_stream_holds_at_most_max_shards_and_visits_each_sequence(frame_world):
    refs = sequence_refs(frame_world)  # 5 sequences, one per shard
    total_bytes = sum(r.frames * 16 * 16 * 3 for r in refs)
    largest = max(r.frames for r in refs) * 16 * 16 * 3
    for max_shards in (1, 2):
        ds = _colour_stream(frame_world, refs, max_shards=max_shards)
        for epoch in range(2):
            ds.set_epoch(epoch)
            items = list(ds)
            assert len(items) == len(ds) == 15 and items[0]["frames"].shape == (3, 16, 16, 3)
            assert Counter(int(x["seq"]) for x in items) == {r.uid: 3 for r in refs}
        assert ds.peak_shards == max_shards and ds.peak_bytes <= max_shards * largest < total_bytes
        assert Counter(s for _, s in ds.shards_read) == {r.shard: 2 for r in refs}  # each shard once per epoch
        assert ds.held_shards == 0 and ds.held_bytes == 0
    a, b = list(_colour_stream(frame_world, refs)), list(_colour_stream(frame_world, refs))
    assert all(torch.equal(x["frames"], y["frames"]) for x, y in zip(a, b))  # a pure function of (seed, epoch)


def test_stream_ranks_and_workers_read_their_own_shards(frame_world):
    refs = sequence_refs(frame_world)[:4]
    seen: Counter = Counter()
    for rank in range(2):
        ds = _colour_stream(frame_world, refs, rank=rank, world_size=2, max_shards=1)
        ds.set_epoch(3)
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
        seqs = [int(s) for batch in loader for s in batch["seq"]]
        assert len(seqs) == len(ds) == 6
        seen.update(seqs)
    assert seen == {r.uid: 3 for r in refs}


@pytest.mark.parametrize("m, unread", [(8, 3), (7, 2)])  # a window's last sample consumed; one inside a window (that shard is read again)
def test_stream_resumes_from_a_cursor_without_reading_consumed_shards(frame_world, m, unread):
    refs = sequence_refs(frame_world)
    full = _colour_stream(frame_world, refs, max_shards=1)
    full.set_epoch(2)
    items = list(full)
    cursor = items[m]["_cursor"].tolist()  # the last consumed sample, in the 3rd window (3 samples per sequence, one shard per window)
    assert cursor == [0, 2, m - 5]
    ds = _colour_stream(frame_world, refs, max_shards=1)
    ds.set_epoch(2)
    ds.load_state_dict({"epoch": 2, "workers": 1, "cursors": {0: cursor[1:]}, "last_worker": 0})
    rest = list(ds)
    assert [int(x["seq"]) for x in rest] == [int(x["seq"]) for x in items[m + 1 :]]
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(rest, items[m + 1 :]))
    assert [s for _, s in ds.shards_read] == [s for _, s in full.shards_read][unread:]  # consumed windows are not read
    with pytest.raises(ValueError, match="epoch"):
        ds.load_state_dict({"epoch": 1, "workers": 1, "cursors": {}, "last_worker": 0})
