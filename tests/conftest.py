"""Shared fixtures: tiny generated media (no ../shared needed) and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avlearn.testing import make_tone_video, require_tool  # noqa: F401  (re-exported for tests)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests run two at a time (pytest -n 2) on 2 cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tone_video(tmp_path_factory) -> Path:
    """3 s, 25 fps, 96x64 H.264 + 16 kHz AAC mono sine (440 Hz)."""
    return make_tone_video(tmp_path_factory.mktemp("media") / "tone.mp4")


@pytest.fixture(scope="session")
def cached_world(tmp_path_factory):
    """Factory: cached_world(name, **make_world_kwargs) → a synthetic world made once per session under ``name``."""
    from avlearn.data.synth import make_world

    def make(name: str, **kwargs) -> Path:
        root = tmp_path_factory.getbasetemp() / f"world_{name}"
        if not (root / "world.json").exists():
            make_world(root, davis=0, workers=1, progress=False, **kwargs)
        return root

    return make


@pytest.fixture(scope="session")
def tiny_world(cached_world) -> Path:
    """16 videos x 3 s, 64 px, 4 sounding categories; splits, labels.csv and boxes.json."""
    return cached_world("tiny", videos=16, seconds=3.0, size_px=64, categories=4, seed=5)
