"""Generated media for the avlearn.media tests (tiny, real files written with PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _media_gen import clicks, gray_frames, sine

from avlearn.media.writer import write_audio, write_video


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media_gen")


@pytest.fixture(scope="session")
def long_video(media_dir) -> Path:
    """12 s, 10 fps, a keyframe every 10 frames, 48 kHz stereo AAC (440 Hz left+right): for the seek paths."""
    path = media_dir / "long.mp4"
    wave = sine(440.0, 12.0, 48000, 0.4)
    write_video(path, gray_frames(120), 10, audio=np.stack([wave, wave]), gop=10)
    return path


@pytest.fixture(scope="session")
def video_only(media_dir) -> Path:
    path = media_dir / "video_only.mp4"
    write_video(path, gray_frames(50), 25)
    return path


@pytest.fixture(scope="session")
def click_video(media_dir) -> Path:
    """3 s, 30 fps H.264 + 16 kHz mono AAC with clicks at 0.5, 1.5 and 2.5 s."""
    path = media_dir / "clicks.mp4"
    write_video(path, gray_frames(90), 30, audio=clicks([0.5, 1.5, 2.5], 3.0, 16000), sample_rate_hz=16000, audio_bitrate=128_000)
    return path


@pytest.fixture(scope="session")
def wav_mono(media_dir) -> Path:
    path = media_dir / "tone_mono.wav"
    write_audio(path, sine(440.0, 12.0, 48000), 48000)
    return path


@pytest.fixture(scope="session")
def good_mp4(media_dir) -> Path:
    """4 s 25 fps 64x96 H.264 + AAC: the seed of the broken-file corpus."""
    path = media_dir / "good.mp4"
    write_video(path, gray_frames(100, (64, 96)), 25, audio=sine(440.0, 4.0, 16000, 0.3), sample_rate_hz=16000)
    return path


@pytest.fixture(scope="session")
def good_wav(media_dir) -> Path:
    path = media_dir / "good.wav"
    write_audio(path, sine(440.0, 3.0, 16000, 0.3), 16000)
    return path
