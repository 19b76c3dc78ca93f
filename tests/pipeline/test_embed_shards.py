"""run_embed on a shard dir made by `avlearn prepare` (real generated media, real tiny AVE-Net checkpoint)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from avlearn.data.prepare import prepare
from avlearn.pipeline.embed import run_embed
from avlearn.pipeline.reader import split_segment_id
from avlearn.pipeline.writer import done_path, iter_shards

FIELDS = ("ids", "image", "audio", "has_audio", "start_sec", "clip_id", "source", "labels")


def _collect(emb) -> dict[str, np.ndarray]:
    rows = [r for _, r in iter_shards(emb)]
    return {k: np.concatenate([getattr(r, k) for r in rows]) for k in FIELDS}


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_segment(got: dict[str, np.ndarray]) -> dict[tuple[str, int], int]:
    """(clip_id, segment index) -> row."""
    return {(str(c), split_segment_id(int(i))[2]): r for r, (c, i) in enumerate(zip(got["clip_id"], got["ids"]))}


def _prepare(archive, out, **kw):
    summary = prepare(archive, out, workers=2, frame_size_px=0, clips_per_shard=3, allow_no_audio=True, progress=False, **kw)
    assert summary["accounted"]
    return out


@pytest.fixture(scope="module")
def shard_dir(archive, tmp_path_factory):
    """The 9-file archive (6 clips, 1 without audio, 2 broken) prepared into 3 tars of 3 clips, at 16 kHz FLAC."""
    return _prepare(archive, tmp_path_factory.mktemp("prep") / "shards")


@pytest.fixture(scope="module")
def raw_emb(tiny_checkpoint, archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "emb"
    run_embed(tiny_checkpoint, archive, out, files_per_shard=3, batch_size=4, dtype="float32", show_progress=False)
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _check_close_to_raw(got: dict, ref: dict) -> None:
    """Same segments and metadata as the raw run; vectors equal up to JPEG/FLAC (and resampling) loss."""
    rows, ref_rows = _by_segment(got), _by_segment(ref)
    assert set(rows) == set(ref_rows)
    keys = sorted(rows)
    a, b = np.array([rows[k] for k in keys]), np.array([ref_rows[k] for k in keys])
    for k in ("start_sec", "clip_id", "source", "labels", "has_audio"):
        np.testing.assert_array_equal(got[k][a], ref[k][b])
    index = np.array([k[1] for k in keys])
    clip = np.array([k[0] for k in keys])
    audible = got["has_audio"][a]
    # frames: all clips show the same grey level at the same segment index; audio: one tone per clip
    _check_matched(got["image"][a], ref["image"][b], index)
    _check_matched(got["audio"][a][audible], ref["audio"][b][audible], clip[audible])


def _check_matched(x: np.ndarray, y: np.ndarray, alike: np.ndarray) -> None:
    """Row i of x ~ row i of y: cosine > 0.99, and the error is small next to that between different
    content (a random tiny net maps everything close together, so 0.99 alone proves little).

    ``alike``: (n,) key of rows whose inputs are legitimately the same content.
    """
    cos = _cosines(x, y)
    assert cos.min() > 0.99, cos
    xn = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    yn = y.astype(np.float64) / np.linalg.norm(y.astype(np.float64), axis=1, keepdims=True)
    cross = 1.0 - xn @ yn.T
    different = alike[:, None] != alike[None, :]
    assert (1.0 - cos).max() < 0.1 * np.median(cross[different]), ((1.0 - cos).max(), np.median(cross[different]))


def test_shard_dir_embeds_like_the_raw_source(tiny_checkpoint, shard_dir, raw_emb, tmp_path):
    seen = []
    out = tmp_path / "emb"
    summary = run_embed(tiny_checkpoint, shard_dir, out, batch_size=4, dtype="float32", show_progress=False, progress=seen.append)
    plan = json.loads((out / "plan.json").read_text())
    # one unit per input tar (tar 0 holds only clip00: broken00/01 are prepare errors)
    assert plan["input"] == "shards" and plan["unit_shards"] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert summary["complete"] and summary["units"] == 3 and summary["files_total"] == 7
    assert summary["errors"] == 2 and summary["files_no_audio"] == 1
    assert seen[-1]["done"] == seen[-1]["total"] == 7
    assert sorted(e["clip_id"] for e in _lines(out / "errors.jsonl")) == ["broken00.mp4", "broken01.mp4"]
    assert [n["clip_id"] for n in _lines(out / "no_audio.jsonl")] == ["silent00.mp4"]
    got = _collect(out)
    assert len(got["ids"]) == len(set(got["ids"].tolist())) == summary["segments_total"] == 14
    assert np.all(np.diff(got["ids"]) > 0)
    # ids decode to (unit, position in the tar's decoded clips, segment index), as clips.jsonl says
    plan_pos = {d["clip_id"]: (d["unit"], d["position"]) for d in _lines(out / "clips.jsonl")}
    for cid, sid in zip(got["clip_id"], got["ids"]):
        assert split_segment_id(int(sid))[:2] == plan_pos[str(cid)]
    assert plan_pos["clip00.mp4"] == (0, 0) and plan_pos["clip01.mp4"] == (1, 0)  # broken00/01 (errors) are absent
    silent = got["clip_id"] == "silent00.mp4"
    assert not got["has_audio"][silent].any() and got["has_audio"][~silent].all() and np.all(got["audio"][silent] == 0)
    _check_close_to_raw(got, _collect(raw_emb))


def test_shards_at_another_rate_are_resampled(tiny_checkpoint, archive, raw_emb, tmp_path):
    shards = _prepare(archive, tmp_path / "shards32k", sample_rate_hz=32000, audio_format="f16")
    out = tmp_path / "emb"
    summary = run_embed(tiny_checkpoint, shards, out, batch_size=4, dtype="float32", show_progress=False)
    assert summary["complete"] and summary["segments_total"] == 14
    _check_close_to_raw(_collect(out), _collect(raw_emb))


def test_resume_after_interruption_is_identical(tiny_checkpoint, shard_dir, tmp_path):
    out = tmp_path / "emb"
    first = run_embed(tiny_checkpoint, shard_dir, out, batch_size=4, show_progress=False)
    ref = _collect(out)
    errors_before = (out / "errors.jsonl").read_text()
    # a kill between writing unit 1's .npz and its done marker, with a temp file left behind
    done_path(out, 1).unlink()
    (out / "shards" / ".shard-000002.npz.tmp-999").write_bytes(b"partial")
    again = run_embed(tiny_checkpoint, shard_dir, out, batch_size=4, show_progress=False)
    assert again["complete"] and again["units_written"] == 1 and again["units_skipped"] == 2 and again["files_processed"] == 3
    got = _collect(out)
    for k in FIELDS:
        np.testing.assert_array_equal(got[k], ref[k])
    assert len(set(got["ids"].tolist())) == len(got["ids"]) == first["segments_total"]
    assert (out / "errors.jsonl").read_text() == errors_before
    assert not list((out / "shards").glob(".*.tmp-*"))
    # a stop in the middle of unit 1 (after clip00 = unit 0, clip01, clip02): only whole units are published
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    part = run_embed(tiny_checkpoint, shard_dir, tmp_path / "emb2", batch_size=4, show_progress=False, should_stop=stop_after_three)
    assert part["stopped"] and not part["complete"] and part["units_done"] == 1
    rest = run_embed(tiny_checkpoint, shard_dir, tmp_path / "emb2", batch_size=4, show_progress=False)
    assert rest["complete"] and rest["units_skipped"] == 1
    got = _collect(tmp_path / "emb2")
    for k in FIELDS:
        np.testing.assert_array_equal(got[k], ref[k])


def test_mismatched_segmenting_is_refused(tiny_checkpoint, shard_dir, tmp_path):
    out = tmp_path / "emb"
    with pytest.raises(ValueError, match=r"prepared with segment_sec=1, but segment_sec=0\.5"):
        run_embed(tiny_checkpoint, shard_dir, out, segment_sec=0.5, show_progress=False)
    with pytest.raises(ValueError, match=r"prepared with hop_sec=1, but hop_sec=0\.5"):
        run_embed(tiny_checkpoint, shard_dir, out, hop_sec=0.5, show_progress=False)
    assert not out.exists()  # refused before anything was written


def test_unfinished_prepare_is_refused(tiny_checkpoint, shard_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(shard_dir, partial)
    (partial / "shard-000002.done.json").unlink()
    with pytest.raises(ValueError, match="published 2 of 3 shards"):
        run_embed(tiny_checkpoint, partial, tmp_path / "emb", show_progress=False)


def test_other_input_refuses_to_resume(tiny_checkpoint, shard_dir, archive, tmp_path):
    out = tmp_path / "emb"
    run_embed(tiny_checkpoint, archive, out, files_per_shard=3, show_progress=False, should_stop=lambda: True)
    with pytest.raises(ValueError, match="other settings.*input"):
        run_embed(tiny_checkpoint, shard_dir, out, show_progress=False)


def test_a_corrupt_input_tar_is_recorded_and_the_job_goes_on(tiny_checkpoint, shard_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shard_dir, broken)
    tar = broken / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:3000])  # cut inside the first samples
    out = tmp_path / "emb"
    summary = run_embed(tiny_checkpoint, broken, out, batch_size=4, show_progress=False)
    assert summary["complete"] and summary["units_done"] == 3
    errors = {e["clip_id"]: e for e in _lines(out / "errors.jsonl")}
    assert set(errors) == {"broken00.mp4", "broken01.mp4", "clip01.mp4", "clip02.mp4", "clip03.mp4"}
    assert all("shard-000001.tar" in errors[c]["reason"] for c in ("clip01.mp4", "clip02.mp4", "clip03.mp4"))
    assert set(_collect(out)["clip_id"].tolist()) == {"clip00.mp4", "clip04.mp4", "clip05.mp4", "silent00.mp4"}


@pytest.mark.slow  # Ray start-up alone takes 10-30 s on a loaded 2-core machine
def test_ray_engine_reads_shard_dirs_like_the_local_engine(tiny_checkpoint, shard_dir, tmp_path):
    pytest.importorskip("ray", reason="the 'ray' extra is not installed")
    local = run_embed(tiny_checkpoint, shard_dir, tmp_path / "local", batch_size=4, dtype="float32", show_progress=False)
    remote = run_embed(tiny_checkpoint, shard_dir, tmp_path / "ray", engine="ray", workers=2, batch_size=4, dtype="float32", show_progress=False)
    assert remote["complete"] and remote["segments_total"] == local["segments_total"] == 14
    a, b = _collect(tmp_path / "local"), _collect(tmp_path / "ray")
    for k in ("ids", "clip_id", "source", "start_sec", "has_audio"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_allclose(a["image"], b["image"], atol=1e-5)  # batch composition differs
    np.testing.assert_allclose(a["audio"], b["audio"], atol=1e-5)
    assert (tmp_path / "ray" / "errors.jsonl").read_text() == (tmp_path / "local" / "errors.jsonl").read_text()
