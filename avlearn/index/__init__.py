"""FAISS index layer: factory choice and tuning (faiss_index), bundles (bundle), segment metadata (metadata).

``Bundle.open(path)`` -> ``.search(modality, vectors, k)``, ``.search_clips(...)`` (top-k clips, each its best
segment; ``group_by_clip``), ``.vector(modality, id)``, ``.segment(id)``.
FAISS itself is imported lazily, inside the functions that need it.
"""

from avlearn.index.bundle import Bundle, Hit, group_by_clip
from avlearn.index.metadata import SegmentMeta

__all__ = ["Bundle", "Hit", "SegmentMeta", "group_by_clip"]
