"""A tiny synthetic world for the AVC task tests (made once per session, shared by name)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """16 videos x 3 s, 64 px, 4 sounding categories; splits, labels.csv and boxes.json."""
    from avlearn.data.synth import make_world

    root = tmp_path_factory.getbasetemp() / "world_tiny"
    if not (root / "world.json").exists():
        make_world(root, videos=16, seconds=3.0, size_px=64, categories=4, seed=5, davis=0, workers=1, progress=False)
    return root
