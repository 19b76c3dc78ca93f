"""Typed views of the wire's result messages, shared by the server side and the client (hand-written).

``Hit`` and ``Timings`` are what a search returns, on both ends of the wire: the library's index
(``avlearn.index.bundle``) and the server's engine build them, the client SDK reads them back from
the messages (``from_proto``). Needs only protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import types_pb2


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
