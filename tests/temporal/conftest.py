"""Tiny generated media for the temporal tests: frames that encode their own index, and a tiny world."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from temporal_media import FPS, index_frames


@pytest.fixture(scope="session")
def index_videos(tmp_path_factory) -> Path:
    """A folder with two 4 s, 25 fps, 32x32 videos (frame i has grey level 2i) and a labels.csv."""
    from avlearn.media.writer import write_video

    root = tmp_path_factory.mktemp("temporal_media")
    (root / "videos").mkdir()
    rows = []
    for k, label in enumerate(["alpha", "beta"]):
        path = root / "videos" / f"idx{k}.mp4"
        write_video(path, iter(index_frames(100)), FPS, audio=np.zeros(4 * 16000, np.float32), sample_rate_hz=16000)
        rows.append([f"videos/{path.name}", label, label])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "visible"])
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def tiny_world(cached_world) -> Path:
    """make_world: 8 videos x 3 s, 32 px, 2 sounding categories (train/val/test splits); overrides the root fixture."""
    return cached_world("temporal", videos=8, seconds=3.0, size_px=32, categories=2, seed=5)


@pytest.fixture(scope="session")
def motion_world(tmp_path_factory) -> Path:
    """The motion world in small: 36 videos x 3 s, 32 px (4 per kind of motion; splits by video)."""
    from avlearn.data.motion_world import make_motion_world

    root = tmp_path_factory.getbasetemp() / "world_motion"
    if not (root / "world.json").exists():
        make_motion_world(root, videos=36, seconds=3.0, size_px=32, seed=2, workers=1, progress=False)
    return root
