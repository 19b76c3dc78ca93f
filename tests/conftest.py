"""Shared fixtures: tiny generated media (no ../shared needed) and the real-data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.media.writer import write_video

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests run two at a time (pytest -n 2) on 2 cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)


def require_tool(name: str) -> str:
    """Path of a system tool; skip outside CI when missing, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI (installed by .ci/run)")
        pytest.skip(f"{name} not installed (apt-get install {name})")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def make_tone_video(
    path: Path, *, seconds: float = 3.0, fps: int = 25, size: tuple[int, int] = (64, 96), sample_rate_hz: int = 16000, freq_hz: float = 440.0, audio: bool = True
) -> Path:
    """A tiny H.264+AAC MP4 whose frame i has every pixel = (3 * i) % 256 and whose audio is a sine.

    The ground truth (which frame is on screen when) is recoverable from pixel values.
    """
    n = int(round(seconds * fps))
    h, w = size
    frames = (np.full((h, w, 3), (3 * i) % 256, np.uint8) for i in range(n))
    wave = None
    if audio:
        t = np.arange(int(round(seconds * sample_rate_hz))) / sample_rate_hz
        wave = (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    write_video(path, frames, fps, audio=wave, sample_rate_hz=sample_rate_hz)
    return path


@pytest.fixture(scope="session")
def tone_video(tmp_path_factory) -> Path:
    """3 s, 25 fps, 96x64 H.264 + 16 kHz AAC mono sine (440 Hz)."""
    return make_tone_video(tmp_path_factory.mktemp("media") / "tone.mp4")
