"""Shared fixtures: tiny generated media (no ../shared needed) and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
