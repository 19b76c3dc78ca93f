"""Types of the query path: what the engine needs of a model (``QueryEmbedder``), what a search or a
localization returns (``SearchOutcome``, ``LocalizeOutcome``), and the per-stage ``Stopwatch``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from avlearn_proto.records import Hit, Localization, Timings

if TYPE_CHECKING:
    from avlearn.embed.heatmap import Heatmap


class QueryEmbedder(Protocol):
    """What the engine needs of a model (``avlearn.embed.Embedder`` is one)."""

    checkpoint_hash: str

    @property
    def dim(self) -> int: ...
    @property
    def image_size_px(self) -> tuple[int, int]: ...
    @property
    def sample_rate_hz(self) -> int: ...
    @property
    def segment_sec(self) -> float: ...
    @property
    def has_localizer(self) -> bool: ...
    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 frames of any size → (N, D) float32, L2-normalised."""
        ...

    def embed_audio(self, waves: np.ndarray) -> np.ndarray:
        """(N, samples) float32 at ``sample_rate_hz`` → (N, D) float32, L2-normalised."""
        ...

    def localize_batch(self, frames: list[np.ndarray], waves: list[np.ndarray]) -> list[Heatmap]:
        """N frames (H_i, W_i, 3) uint8 and N waves (n_i,) float32 → N heatmaps."""
        ...


AUDIO, IMAGE = "audio", "image"


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    bundle_id: str
    timings: Timings


LocalizeOutcome = Localization  # the engine returns what the client reads back (cached False)


@dataclass
class Stopwatch:
    """Milliseconds per stage ("decode", "embed", "search"), summed over a query's stages of that name."""

    t0: float = field(default_factory=time.perf_counter)
    stages_ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages_ms[name] = self.stages_ms.get(name, 0.0) + 1000 * (time.perf_counter() - t)

    def done(self) -> Timings:
        return Timings(**{f"{k}_ms": v for k, v in self.stages_ms.items()}, total_ms=1000 * (time.perf_counter() - self.t0))
