"""Inference: checkpoint → preprocessing + model → vectors and localization heatmaps.

- ``Embedder.from_checkpoint(path, localizer=None, device="auto")`` (embedder.py)
- ``Preprocessor.from_config(model.preprocessing)`` (preprocess.py): frames/waves → model inputs
- ``Heatmap``, ``upsample_heatmap``, ``render_overlay``, ``peak`` (heatmap.py)

Names are imported lazily so ``import avlearn.embed.heatmap`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Embedder": "avlearn.embed.embedder",
    "NoLocalizerError": "avlearn.embed.embedder",
    "Preprocessor": "avlearn.embed.preprocess",
    "Heatmap": "avlearn.embed.heatmap",
    "peak": "avlearn.embed.heatmap",
    "upsample_heatmap": "avlearn.embed.heatmap",
    "render_overlay": "avlearn.embed.heatmap",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'avlearn.embed' has no attribute {name!r}")
