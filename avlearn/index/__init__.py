"""FAISS index layer: factory choice and tuning (faiss_index), bundles (bundle), segment metadata (metadata).

``Bundle.open(path)`` -> ``.search(modality, vectors, k)``, ``.vector(modality, id)``, ``.segment(id)``.
FAISS itself is imported lazily, inside the functions that need it.
"""

from avlearn.index.bundle import Bundle, Hit
from avlearn.index.metadata import SegmentMeta

__all__ = ["Bundle", "Hit", "SegmentMeta"]
