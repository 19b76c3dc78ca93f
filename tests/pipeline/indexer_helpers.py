"""Tiny real inputs for the indexer tests: an AVE-Net test_tiny checkpoint and generated videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avlearn.testing import make_tone_video


def make_checkpoint(out: Path) -> Path:
    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.models import create_model

    torch.manual_seed(0)
    model = create_model("ave_net", "test_tiny")
    save_checkpoint(out, model)
    return out


def make_archive(root: Path, *, clips: int = 6, seconds: float = 2.0, corrupt: int = 0, silent: int = 0) -> list[Path]:
    """``clips`` tone videos (different pitch and frame offsets), plus corrupt and audio-less files."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(clips):
        paths.append(make_tone_video(root / f"clip{i:02d}.mp4", seconds=seconds, fps=10, size=(32, 48), freq_hz=220.0 * (i + 1)))
    for i in range(silent):
        paths.append(make_tone_video(root / f"silent{i:02d}.mp4", seconds=seconds, fps=10, size=(32, 48), audio=False))
    rng = np.random.default_rng(0)
    for i in range(corrupt):
        p = root / f"broken{i:02d}.mp4"
        if i % 2 == 0:
            p.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())  # not media at all
        else:
            good = paths[0].read_bytes()
            p.write_bytes(good[: len(good) // 3])  # truncated mp4 (moov atom missing)
        paths.append(p)
    return paths
