"""Helpers for tests and examples: small generated media with known ground truth.

Kept in the library (like ``numpy.testing``) so every test folder imports them the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from avlearn.media.writer import write_video


def run_torchrun(script: str | os.PathLike, *args: str, nproc: int = 2, timeout_sec: float = 300) -> None:
    """``torchrun --standalone --nproc-per-node N script args`` on CPU (one OpenMP thread per process).

    Raises:
        AssertionError: a non-zero exit, with the tail of its stderr.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_sec, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise AssertionError(f"torchrun exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def require_tool(name: str) -> str:
    """Path of a system tool; skip outside CI when it is missing, fail under CI=true."""
    import pytest

    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI (installed by .ci/run)")
        pytest.skip(f"{name} not installed (apt-get install {name})")
    return path


def make_tone_video(
    path: str | os.PathLike,
    *,
    seconds: float = 3.0,
    fps: int = 25,
    size: tuple[int, int] = (64, 96),
    sample_rate_hz: int = 16000,
    freq_hz: float = 440.0,
    audio: bool = True,
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
    return Path(path)
