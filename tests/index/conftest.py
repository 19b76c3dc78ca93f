"""Fixtures for the index tests (helpers live in index_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from index_helpers import write_embeddings


@pytest.fixture
def embeddings(tmp_path) -> tuple[Path, dict]:
    """An embeddings dir with 3 units x 4 clips x 5 segments, 16-d; clip (0, 1) has no audio."""
    emb = tmp_path / "emb"
    return emb, write_embeddings(emb)
