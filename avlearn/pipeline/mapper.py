"""Mapper stage: decoded segments -> image and audio embeddings (``avlearn.embed.Embedder``).

``UnitBuilder`` collects one unit's clips in position order and embeds them in
batches of ``batch_size`` segments as they arrive. Batches never cross a unit and
are cut at fixed positions, so a unit's vectors do not depend on timing or on
which run (first or resumed) produced them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avlearn.pipeline.reader import ClipJob, Decoded, segment_id
from avlearn.pipeline.writer import ShardRows


class Mapper:
    """Batched inference over segments.

    Args:
        embedder: an ``avlearn.embed.Embedder`` (``embed_images``, ``embed_audio``, ``dim``).
        batch_size: segments per forward pass.
    """

    def __init__(self, embedder: Any, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.embedder = embedder
        self.batch_size = batch_size
        self.dim = int(embedder.dim)
        self.embed_sec = 0.0

    def embed(self, frames: np.ndarray, waves: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch: frames (B, H, W, 3) uint8, waves B x ((n,) float32 | None).

        Returns image (B, D), audio (B, D) (zero rows for None waves), has_audio (B,) bool.
        """
        t0 = time.perf_counter()
        image = np.asarray(self.embedder.embed_images(frames), np.float32)
        has_audio = np.array([w is not None for w in waves], bool)
        audio = np.zeros((len(waves), self.dim), np.float32)
        if has_audio.any():
            stack = np.stack([w for w in waves if w is not None]).astype(np.float32)
            audio[has_audio] = np.asarray(self.embedder.embed_audio(stack), np.float32)
        self.embed_sec += time.perf_counter() - t0
        return image, audio, has_audio

    def embed_segments(self, segments: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``segments`` (``avlearn.media.Segment``-like), in batches of ``batch_size``."""
        parts = [
            self.embed(np.stack([s.frame for s in segments[i : i + self.batch_size]]), [s.audio for s in segments[i : i + self.batch_size]])
            for i in range(0, len(segments), self.batch_size)
        ]
        if not parts:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.dim), np.float32), np.zeros(0, bool)
        return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]


@dataclass
class EmbeddedClip:
    """One clip's embedded segments."""

    job: ClipJob
    index: np.ndarray  # (s,) segment indices
    start_sec: np.ndarray  # (s,) float64
    image: np.ndarray  # (s, D) float32
    audio: np.ndarray  # (s, D) float32, zero rows when has_audio is False
    has_audio: np.ndarray  # (s,) bool


@dataclass
class UnitBuilder:
    """Accumulates one unit (clips added in position order) and produces its shard rows."""

    unit: int
    num_clips: int
    mapper: Mapper | None = None
    dim: int | None = None
    clips: list[EmbeddedClip] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    no_audio: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)  # clips with grid positions skipped at frame gaps
    decode_sec: float = 0.0
    seen: int = 0
    _pending: list[tuple[int, Any]] = field(default_factory=list)  # (clip slot, segment)
    _slots: list[dict] = field(default_factory=list)

    def add_decoded(self, dec: Decoded) -> None:
        """Add a decoded clip (local engine); embeds every full batch right away."""
        assert self.mapper is not None
        self._account(dec, len(dec.segments))
        if dec.error is None:
            slot = len(self._slots)
            self._slots.append({"job": dec.job, "rows": []})
            self._pending.extend((slot, s) for s in dec.segments)
            while len(self._pending) >= self.mapper.batch_size:
                self._flush(self.mapper.batch_size)

    def add_embedded(self, dec: Decoded, clip: EmbeddedClip | None, num_segments: int) -> None:
        """Add a clip embedded elsewhere (Ray actors); ``clip`` is None for a failed decode."""
        self._account(dec, num_segments)
        if clip is not None:
            self.clips.append(clip)

    def _account(self, dec: Decoded, num_segments: int) -> None:
        if dec.job.position != self.seen:
            raise RuntimeError(f"unit {self.unit}: clip {dec.job.position} arrived, expected {self.seen}")
        self.seen += 1
        self.decode_sec += dec.decode_sec
        if dec.error is not None:
            self.errors.append(dec.error)
        else:
            if not dec.has_audio:
                self.no_audio.append({"clip_id": dec.job.clip.clip_id, "path": dec.job.clip.path, "segments": num_segments})
            gaps = dec.gaps
            if gaps:
                self.gaps.append({"clip_id": dec.job.clip.clip_id, "path": dec.job.clip.path, "skipped": len(gaps), "first": gaps[:5]})

    def _flush(self, n: int) -> None:
        batch, self._pending = self._pending[:n], self._pending[n:]
        image, audio, has_audio = self.mapper.embed(np.stack([s.frame for _, s in batch]), [s.audio for _, s in batch])  # type: ignore[union-attr]
        for i, (slot, seg) in enumerate(batch):
            self._slots[slot]["rows"].append((seg.index, seg.start_sec, image[i], audio[i], has_audio[i]))

    @property
    def complete(self) -> bool:
        return self.seen == self.num_clips

    def finish(self, dtype: str = "float16") -> ShardRows:
        """Embed what is left and return the unit's rows, ordered by segment id."""
        if self.mapper is not None and self._pending:
            self._flush(len(self._pending))
        for slot in self._slots:
            rows = slot["rows"]
            if rows:
                idx, start, img, aud, ha = zip(*rows)
                self.clips.append(EmbeddedClip(slot["job"], np.array(idx), np.array(start, np.float64), np.stack(img), np.stack(aud), np.array(ha, bool)))
        self._slots = []
        return assemble(self.clips, dtype, self.mapper.dim if self.mapper else self.dim)


def assemble(clips: list[EmbeddedClip], dtype: str, dim: int | None) -> ShardRows:
    """Concatenate embedded clips into shard rows sorted by segment id."""
    clips = sorted(clips, key=lambda c: c.job.position)
    if not clips:
        d = dim or 0
        empty = np.zeros((0, d), dtype)
        return ShardRows(np.zeros(0, np.int64), empty, empty.copy(), np.zeros(0, bool), np.zeros(0), np.array([], str), np.array([], str), np.array([], str))
    ids = np.concatenate([[segment_id(c.job.unit, c.job.position, int(i)) for i in c.index] for c in clips]).astype(np.int64)
    rep = lambda f: np.concatenate([np.full(len(c.index), f(c), dtype=object) for c in clips]).astype(str)  # noqa: E731
    rows = ShardRows(
        ids=ids,
        image=np.concatenate([c.image for c in clips]).astype(dtype),
        audio=np.concatenate([c.audio for c in clips]).astype(dtype),
        has_audio=np.concatenate([c.has_audio for c in clips]),
        start_sec=np.concatenate([c.start_sec for c in clips]),
        clip_id=rep(lambda c: c.job.clip.clip_id),
        source=rep(lambda c: c.job.clip.path),
        labels=rep(lambda c: ";".join(c.job.clip.labels)),
    )
    order = np.argsort(rows.ids, kind="stable")
    if not np.all(order == np.arange(len(order))):
        rows = ShardRows(*(getattr(rows, k)[order] for k in ShardRows.__dataclass_fields__))
    return rows
