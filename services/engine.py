"""The query engine (no gRPC): media → Embedder → Bundle.

An :class:`Engine` pairs one Embedder with one open Bundle and is immutable; a reload
builds a new Engine on a new Bundle and swaps the reference in :class:`EngineHolder`.
Each query holds a reference count on the engine it started with, and the old bundle is
closed only when its last query has finished, so a reload drops nothing.

Every query runs in stages (decode → embed → search); between stages it calls
``check(stage)``, which raises :class:`Abandoned` when the client has gone or its deadline
has passed, so no work is spent on answers nobody will read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from services.errors import Check, InvalidQuery, NotReady, UnknownSegment, no_check
from services.gate import ComputeGate, default_compute_slots
from services.query_media import MediaDecoder, MediaQuery, audio_windows
from services.settings import Limits

if TYPE_CHECKING:
    from avlearn.embed.heatmap import Heatmap
    from avlearn.index.bundle import Bundle

log = logging.getLogger(__name__)


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

    def localize(self, frame: np.ndarray, wave: np.ndarray) -> Heatmap: ...


AUDIO, IMAGE = "audio", "image"


@dataclass
class Timings:
    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class SearchOutcome:
    hits: list  # avlearn.index.bundle.Hit
    bundle_id: str
    timings: Timings


@dataclass(frozen=True)
class LocalizeOutcome:
    """heatmap (H, W) float32 in [0, 1]; grid (h, w) float32; peak_yx normalised; overlay PNG or None."""

    heatmap: np.ndarray
    grid: np.ndarray
    peak_yx: tuple[float, float]
    score: float
    overlay_png: bytes | None
    bundle_id: str
    timings: Timings


@dataclass
class _Stopwatch:
    t0: float = field(default_factory=time.perf_counter)
    timings: Timings = field(default_factory=Timings)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            setattr(self.timings, f"{name}_ms", getattr(self.timings, f"{name}_ms") + 1000 * (time.perf_counter() - t))

    def done(self) -> Timings:
        self.timings.total_ms = 1000 * (time.perf_counter() - self.t0)
        return self.timings


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidQuery("the query vector must be finite and non-zero")
    return (v / norm).astype(np.float32)


class Engine:
    """One Embedder + one open Bundle, with per-query reference counting for safe reloads.

    Args:
        embedder: an ``avlearn.embed.Embedder``.
        bundle: an open ``avlearn.index.bundle.Bundle`` (or None: retrieval answers NotReady).
        bundle_path: what the bundle was opened from (for reloads of the same path).
        limits: request limits.
        decoder: how query media is decoded.
        gate: bounds concurrent model forward passes (shared by the engines of one server).
    """

    def __init__(
        self, embedder: QueryEmbedder | None, bundle: Bundle | None, bundle_path: Path | None, limits: Limits, decoder: MediaDecoder | None = None, gate: ComputeGate | None = None,
    ) -> None:  # fmt: skip
        self.embedder = embedder
        self.bundle = bundle
        self.bundle_path = bundle_path
        self.limits = limits
        self.decoder = decoder or MediaDecoder(limits)
        self.gate = gate or ComputeGate(default_compute_slots())
        self.loaded_unix = time.time()
        self._refs = 0
        self._retired = False
        self._closed = False
        self._lock = threading.Lock()

    # -- lifetime ----------------------------------------------------------------------------
    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id if self.bundle is not None else ""

    def acquire(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("engine already closed")
            self._refs += 1

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            close = self._retired and self._refs == 0 and not self._closed
            if close:
                self._closed = True
        if close:
            self._close_bundle()

    def retire(self) -> None:
        """No new queries will start here; close the bundle once the in-flight ones are done."""
        with self._lock:
            self._retired = True
            close = self._refs == 0 and not self._closed
            if close:
                self._closed = True
        if close:
            self._close_bundle()

    @property
    def closed(self) -> bool:
        return self._closed

    def _close_bundle(self) -> None:
        if self.bundle is not None:
            log.info("closing bundle %s", self.bundle_id)
            self.bundle.close()

    # -- queries -----------------------------------------------------------------------------
    def _require_embedder(self) -> QueryEmbedder:
        if self.embedder is None:
            raise NotReady("no model is loaded (start the server with --checkpoint)")
        return self.embedder

    def _require_bundle(self) -> Bundle:
        if self.bundle is None:
            raise NotReady("no index bundle is loaded (start the server with --bundle or call ReloadIndex)")
        return self.bundle

    def check_k(self, k: int) -> int:
        """k = 0 → default_k; otherwise 1..max_k."""
        if k == 0:
            return self.limits.default_k
        if not 1 <= k <= self.limits.max_k:
            raise InvalidQuery(f"k must be between 1 and {self.limits.max_k}, got {k}")
        return k

    def _image_of(self, q: MediaQuery, size_px: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W, 3) uint8: an encoded image as sent, or a video's frame at ``q.time_sec``.

        ``size_px``: decode the video frame straight to the model's size, the path indexed
        segments take (avlearn.media.read_segments), so a query by (video, time) reproduces
        the stored vector; None keeps the native size (Localize overlays).
        """
        if q.data is not None:
            return self.decoder.image(q.data)
        assert q.video is not None
        return self.decoder.video_frame(q.video, q.time_sec, size_px)

    def _audio_of(self, q: MediaQuery, emb: QueryEmbedder) -> np.ndarray:
        sr = int(emb.sample_rate_hz)
        if q.data is not None:
            return self.decoder.audio(q.data, sr)
        assert q.video is not None
        return self.decoder.video_audio(q.video, q.time_sec, float(emb.segment_sec), sr)

    def _stored_vector(self, modality: str, segment_id: int) -> np.ndarray:
        bundle = self._require_bundle()
        try:
            return bundle.vector(modality, int(segment_id))
        except KeyError:
            raise UnknownSegment(f"segment {segment_id} is not in bundle {self.bundle_id} ({modality} index)") from None

    def query_vector(self, modality: str, q: MediaQuery, check: Check = no_check, sw: _Stopwatch | None = None) -> np.ndarray:
        """The (D,) L2-normalised embedding of a query of ``modality`` ("audio" | "image")."""
        sw = sw or _Stopwatch()
        kind = q.kind()
        if kind == "segment_id":
            assert q.segment_id is not None
            return self._stored_vector(modality, q.segment_id)
        emb = self._require_embedder()
        if kind == "vector":
            v = np.asarray(q.vector, np.float32).reshape(-1)
            if v.shape[0] != int(emb.dim):
                raise InvalidQuery(f"the query vector has {v.shape[0]} values; this server's embeddings have {emb.dim}")
            return _normalise(v)
        check("decode")
        with sw.stage("decode"):
            media = self._image_of(q, (int(emb.image_size_px[0]), int(emb.image_size_px[1]))) if modality == IMAGE else self._audio_of(q, emb)
        check("embed")
        with self.gate(check), sw.stage("embed"):
            if modality == IMAGE:
                vec = emb.embed_images(media[None])[0]
            else:
                seg = int(round(float(emb.segment_sec) * int(emb.sample_rate_hz)))
                vecs = emb.embed_audio(audio_windows(media, seg))
                vec = np.asarray(vecs, np.float32).mean(axis=0)
        return _normalise(np.asarray(vec, np.float32))

    def search(self, query_modality: str, target_modality: str, q: MediaQuery, k: int, check: Check = no_check) -> SearchOutcome:
        """Top-k segments of ``target_modality`` for a query of ``query_modality``.

        A same-modality query given by segment id leaves that segment out of its own results.
        """
        k = self.check_k(k)
        self._require_embedder()
        bundle = self._require_bundle()
        sw = _Stopwatch()
        vec = self.query_vector(query_modality, q, check, sw)
        exclude = q.segment_id if (q.segment_id is not None and query_modality == target_modality) else None
        check("search")
        with sw.stage("search"):
            hits = bundle.search(target_modality, vec[None], k + (1 if exclude is not None else 0))[0]
        if exclude is not None:
            hits = [h for h in hits if h.segment_id != exclude][:k]
        return SearchOutcome(hits, self.bundle_id, sw.done())

    def _segment_media(self, segment_id: int, modality: str) -> np.ndarray:
        """Decode a bundle segment's frame or audio from its source file (Localize by segment id)."""
        from avlearn.media import read_audio, read_frames

        bundle = self._require_bundle()
        try:
            meta = bundle.segment(int(segment_id))
        except KeyError:
            raise UnknownSegment(f"segment {segment_id} is not in bundle {self.bundle_id}") from None
        if not Path(meta.source).is_file():
            raise NotReady(f"the source media of segment {segment_id} ({meta.source}) is not available on this server")
        if modality == IMAGE:
            return read_frames(meta.source, [meta.start_sec]).images[0]
        emb = self._require_embedder()
        return read_audio(meta.source, meta.start_sec, float(emb.segment_sec), int(emb.sample_rate_hz))

    def localize(self, audio: MediaQuery, image: MediaQuery, *, overlay: bool = False, check: Check = no_check) -> LocalizeOutcome:
        """Where in ``image`` the sound of ``audio`` comes from (AVOL-Net heatmap)."""
        from avlearn.embed.heatmap import render_overlay, upsample_heatmap

        emb = self._require_embedder()
        if not emb.has_localizer:
            raise NotReady("this server has no localization model (start it with --localizer-checkpoint, an AVOL-Net checkpoint)")
        for name, q in (("audio", audio), ("image", image)):
            if q.kind() == "vector":
                raise InvalidQuery(f"Localize needs {name} media (bytes, a video with a time, or a segment id), not a vector")
        sw = _Stopwatch()
        check("decode")
        with sw.stage("decode"):
            frame = self._segment_media(image.segment_id, IMAGE) if image.segment_id is not None else self._image_of(image)
            if audio.segment_id is not None:
                wave = self._segment_media(audio.segment_id, AUDIO)
            else:
                wave = self._audio_of(audio, emb)
                wave = wave[: int(round(float(emb.segment_sec) * int(emb.sample_rate_hz)))]
        check("embed")
        with self.gate(check), sw.stage("embed"):
            heat = emb.localize(frame, wave)
            grid = np.asarray(heat.grid, np.float32)
            h, w = frame.shape[:2]
            scale = min(1.0, math.sqrt(self.limits.max_heatmap_pixels / float(h * w)))
            size = (max(1, int(h * scale)), max(1, int(w * scale)))
            heatmap = np.asarray(upsample_heatmap(grid, size), np.float32)
            png = render_overlay(frame, grid) if overlay else None
        peak = (float(heat.peak_yx[0]), float(heat.peak_yx[1]))
        return LocalizeOutcome(heatmap, grid, peak, float(heat.score), png, self.bundle_id, sw.done())

    def info(self) -> dict:
        """What GetIndexInfo reports."""
        e = self.embedder
        m = self.bundle.manifest.to_dict() if self.bundle is not None else {}
        if e is None:
            return {"bundle_id": self.bundle_id, "bundle_path": str(self.bundle_path or ""), "manifest": m, "loaded_unix": self.loaded_unix}
        h, w = (int(x) for x in e.image_size_px)
        return {
            "bundle_id": self.bundle_id,
            "bundle_path": str(self.bundle_path or ""),
            "checkpoint_hash": str(getattr(e, "checkpoint_hash", "")),
            "manifest": m,
            "loaded_unix": self.loaded_unix,
            "embedding_dim": int(e.dim),
            "image_size_px": (h, w),
            "sample_rate_hz": int(e.sample_rate_hz),
            "segment_sec": float(e.segment_sec),
            "has_localizer": bool(getattr(e, "has_localizer", False)),
        }


def open_bundle(path: Path, embedder: QueryEmbedder, *, strict_checkpoint: bool = True) -> Bundle:
    """Open a bundle for serving, refusing one built by another checkpoint (``strict_checkpoint``)."""
    from avlearn.index.bundle import Bundle

    bundle = Bundle.open(path, serving=True)
    want = str(getattr(embedder, "checkpoint_hash", ""))
    got = str(bundle.manifest.checkpoint_hash or "")
    if strict_checkpoint and want and got and want != got:
        bundle.close()
        raise NotReady(f"bundle {path} was built by checkpoint {got[:12]}…, but this server embeds with {want[:12]}…")
    return bundle


class EngineHolder:
    """The current Engine behind a lock: queries ``use()`` it, reloads ``swap()`` it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self.reloads = 0

    @property
    def current(self) -> Engine:
        return self._engine

    @contextmanager
    def use(self) -> Iterator[Engine]:
        """The current engine, kept open until the block ends (even if a reload happens meanwhile)."""
        with self._lock:
            engine = self._engine
            engine.acquire()
        try:
            yield engine
        finally:
            engine.release()

    def reload(self, path: Path | None, *, strict_checkpoint: bool = True) -> tuple[str, str]:
        """Open the bundle at ``path`` (None = the current path) and swap it in; returns (old id, new id).

        Opening happens outside the swap lock, so queries keep flowing meanwhile; the old bundle
        is closed when its last in-flight query finishes.
        """
        with self._reload_lock:
            old = self._engine
            if old.embedder is None:
                raise NotReady("no model is loaded (start the server with --checkpoint)")
            target = Path(path) if path else old.bundle_path
            if target is None:
                raise InvalidQuery("no bundle path given and none loaded before")
            bundle = open_bundle(target, old.embedder, strict_checkpoint=strict_checkpoint)
            new = Engine(old.embedder, bundle, target, old.limits, old.decoder, old.gate)
            with self._lock:
                self._engine = new
                self.reloads += 1
            old.retire()
            log.info("reloaded bundle %s -> %s from %s", old.bundle_id or "-", new.bundle_id, target)
            return old.bundle_id, new.bundle_id

    def close(self) -> None:
        with self._lock:
            self._engine.retire()
