"""A small synthetic world shared by the AVC sampler tests (cached once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest


def cached_world(tmp_path_factory, name: str, **kwargs) -> Path:
    """make_world(**kwargs) once per session under a name shared by all test folders."""
    from avlearn.data.synth import make_world

    root = tmp_path_factory.getbasetemp() / f"world_{name}"
    if not (root / "world.json").exists():
        make_world(root, davis=0, workers=1, progress=False, **kwargs)
    return root


@pytest.fixture(scope="session")
def probe_world(tmp_path_factory) -> Path:
    """12 videos x 4 s, 64 px, 4 sounding categories."""
    return cached_world(tmp_path_factory, "probe", videos=12, seconds=4.0, size_px=64, categories=4, seed=11)
