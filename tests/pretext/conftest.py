"""A small synthetic world shared by the AVC sampler tests (cached once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def probe_world(cached_world) -> Path:
    """12 videos x 4 s, 64 px, 4 sounding categories."""
    return cached_world("probe", videos=12, seconds=4.0, size_px=64, categories=4, seed=11)
