"""Pretext-task samplers (AV correspondence, temporal order, colorization, ...).

The split convention they share lives in :mod:`avlearn.data.splits` (re-exported here).
"""

from __future__ import annotations

from avlearn.data.splits import SPLITS, resolve_split

__all__ = ["SPLITS", "resolve_split"]
