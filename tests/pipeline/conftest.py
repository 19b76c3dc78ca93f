"""Fixtures for the indexer tests (helpers live in indexer_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from indexer_helpers import make_archive, make_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "ave")


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    """6 good 2 s clips, 1 without audio, 2 broken files."""
    root = tmp_path_factory.mktemp("archive")
    make_archive(root, clips=6, corrupt=2, silent=1)
    return root
