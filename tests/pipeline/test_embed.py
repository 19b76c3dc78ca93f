"""run_embed end to end on real generated media with a real (tiny, random) AVE-Net checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avlearn.pipeline.embed import run_embed
from avlearn.pipeline.reader import split_segment_id
from avlearn.pipeline.writer import iter_shards


def _collect(emb):
    rows = [r for _, r in iter_shards(emb)]
    cat = lambda k: np.concatenate([getattr(r, k) for r in rows])  # noqa: E731
    return {k: cat(k) for k in ("ids", "image", "audio", "has_audio", "start_sec", "clip_id")}


def test_embed_archive_records_bad_files_and_embeds_the_rest(tiny_checkpoint, archive, tmp_path):
    seen = []
    out = tmp_path / "emb"
    summary = run_embed(tiny_checkpoint, archive, out, workers=2, files_per_shard=3, batch_size=4, show_progress=False, progress=seen.append)
    assert summary["complete"] and summary["files_total"] == 9
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["clip_id"] for e in errors) == ["broken00.mp4", "broken01.mp4"]
    assert all(e["error"] in ("CorruptMedia", "MissingMedia") and e["reason"] and e["path"] for e in errors)
    no_audio = [json.loads(line) for line in (out / "no_audio.jsonl").read_text().splitlines()]
    assert [n["clip_id"] for n in no_audio] == ["silent00.mp4"]
    got = _collect(out)
    clips = set(got["clip_id"].tolist())
    assert clips == {f"clip{i:02d}.mp4" for i in range(6)} | {"silent00.mp4"}
    assert len(got["ids"]) == len(set(got["ids"].tolist())) == summary["segments_total"] == 7 * 2
    assert np.all(np.diff(got["ids"]) > 0)
    np.testing.assert_allclose(np.linalg.norm(got["image"].astype(np.float32), axis=1), 1.0, atol=1e-2)
    silent = got["clip_id"] == "silent00.mp4"
    assert not got["has_audio"][silent].any() and got["has_audio"][~silent].all()
    assert np.all(got["audio"][silent] == 0)
    # ids decode back to (unit, position, segment index)
    assert sorted({split_segment_id(int(i))[2] for i in got["ids"]}) == [0, 1]
    assert seen[-1]["done"] == seen[-1]["total"] == 9 and seen[-1]["errors"] == 2
    assert set(summary["stages_sec"]) == {"decode", "embed", "write"}
    # a re-run finds everything done and changes nothing
    again = run_embed(tiny_checkpoint, archive, out, workers=2, files_per_shard=3, batch_size=4, show_progress=False)
    assert again["units_skipped"] == again["units"] and again["files_processed"] == 0
    np.testing.assert_array_equal(_collect(out)["image"], got["image"])


def test_should_stop_leaves_a_resumable_state(tiny_checkpoint, archive, tmp_path):
    out = tmp_path / "emb"
    calls = {"n": 0}

    def stop_after_four():
        calls["n"] += 1
        return calls["n"] > 4

    first = run_embed(tiny_checkpoint, archive, out, files_per_shard=3, show_progress=False, should_stop=stop_after_four)
    assert first["stopped"] and not first["complete"] and first["units_done"] == 1
    second = run_embed(tiny_checkpoint, archive, out, files_per_shard=3, show_progress=False)
    assert second["complete"] and second["units_skipped"] == 1
    ref = run_embed(tiny_checkpoint, archive, tmp_path / "ref", files_per_shard=3, show_progress=False)
    a, b = _collect(out), _collect(tmp_path / "ref")
    np.testing.assert_array_equal(a["ids"], b["ids"])
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["audio"], b["audio"])
    assert ref["segments_total"] == second["segments_total"]


def test_other_settings_refuse_to_resume(tiny_checkpoint, archive, tmp_path):
    out = tmp_path / "emb"
    run_embed(tiny_checkpoint, archive, out, files_per_shard=3, show_progress=False, should_stop=lambda: True)
    with pytest.raises(ValueError, match="other settings"):
        run_embed(tiny_checkpoint, archive, out, files_per_shard=3, hop_sec=0.5, show_progress=False)
