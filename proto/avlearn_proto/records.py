"""Typed views of the wire's result messages, shared by the server side and the client (hand-written).

``Hit``, ``Timings`` and ``Localization`` are what a search or a localization returns, on both ends of the wire: the library's index
(``avlearn.index.bundle``) and the server's engine build them, the client SDK reads them back from
the messages (``from_proto``). Needs only protobuf and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import service_pb2, types_pb2


@dataclass(frozen=True)
class Hit:
    """One search result (or one segment's metadata, with score 0.0); ``score`` is the inner product of
    L2-normalised embeddings; ``start_sec``: the segment's start in its source."""

    segment_id: int
    score: float
    clip_id: str
    source: str
    start_sec: float
    labels: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, msg: types_pb2.Hit) -> Hit:
        return cls(int(msg.segment_id), float(msg.score), msg.clip_id, msg.source, float(msg.start_sec), tuple(msg.labels))

    def to_proto(self) -> types_pb2.Hit:
        return types_pb2.Hit(
            segment_id=int(self.segment_id), score=float(self.score), clip_id=str(self.clip_id), source=str(self.source),
            start_sec=float(self.start_sec), labels=list(self.labels),
        )  # fmt: skip


@dataclass(frozen=True)
class Timings:
    """Server-side stage times in milliseconds."""

    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0

    @classmethod
    def from_proto(cls, msg: types_pb2.Timings) -> Timings:
        return cls(msg.decode_ms, msg.embed_ms, msg.search_ms, msg.total_ms)

    def to_proto(self) -> types_pb2.Timings:
        return types_pb2.Timings(decode_ms=self.decode_ms, embed_ms=self.embed_ms, search_ms=self.search_ms, total_ms=self.total_ms)


def matrix_to_numpy(msg: types_pb2.FloatMatrix) -> np.ndarray:
    """A FloatMatrix → (height, width) float32."""
    return np.asarray(msg.values, np.float32).reshape(msg.height, msg.width)


@dataclass(frozen=True)
class Localization:
    """Sounding-object localization (a Localize reply; the server's engine returns it with ``cached`` False).

    Attributes:
        heatmap: (H, W) float32 in [0, 1] at the image's size (capped by the server).
        grid: (h, w) float32 in [0, 1], the model's cell grid the heatmap came from.
        peak_yx: the peak, normalised to [0, 1] (row, column).
        score: audio-visual correspondence probability.
        overlay_png: the heatmap drawn over the image, when asked for.
    """

    heatmap: np.ndarray
    grid: np.ndarray
    peak_yx: tuple[float, float]
    score: float
    overlay_png: bytes | None
    bundle_id: str
    timings: Timings
    cached: bool = False  # the server answered from its query cache

    @classmethod
    def from_proto(cls, msg: service_pb2.LocalizeResponse) -> Localization:
        return cls(
            heatmap=matrix_to_numpy(msg.heatmap),
            grid=matrix_to_numpy(msg.grid),
            peak_yx=(float(msg.peak_y), float(msg.peak_x)),
            score=float(msg.score),
            overlay_png=bytes(msg.overlay_png) or None,
            bundle_id=msg.bundle_id,
            timings=Timings.from_proto(msg.timings),
            cached=bool(msg.cached),
        )
