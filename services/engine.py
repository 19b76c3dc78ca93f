"""The query engine (no gRPC): media → Embedder → Bundle.

An :class:`Engine` pairs one Embedder with one open Bundle and is immutable; a reload
builds a new Engine on a new Bundle and swaps the reference in :class:`EngineHolder`.
Each query holds a reference count on the engine it started with, and the old bundle is
closed only when its last query has finished, so a reload drops nothing.

Every query runs in stages (decode → embed → search), each a blocking function the server
runs on its executor, with the model passes and searches of concurrent queries gathered into
batches (``services.scheduler``). Between stages a query calls ``check(stage)``, which raises
:class:`Abandoned` when the client has gone or its deadline has passed, so no work is spent on
answers nobody will read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.errors import Check, InvalidQuery, NotReady, UnknownSegment, no_check
from services.query_media import MediaDecoder, MediaQuery, audio_windows
from services.query_types import AUDIO, IMAGE, LocalizeOutcome, QueryEmbedder, SearchOutcome, Stopwatch
from services.settings import Limits

if TYPE_CHECKING:
    from avlearn.embed.heatmap import Heatmap
    from avlearn.index.bundle import Bundle

log = logging.getLogger(__name__)


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidQuery("the query vector must be finite and non-zero")
    return (v / norm).astype(np.float32)


class Engine:
    """One Embedder + one open Bundle, with per-query reference counting for safe reloads.

    The query work comes in stages, each a plain blocking function, so the server can run them
    on its executor and gather model passes and searches of concurrent queries into batches
    (``services.scheduler``): ``decode_image`` / ``decode_audio`` / ``localize_inputs`` (per
    query), ``embed_images`` / ``embed_audio`` / ``localize_batch`` / ``search_batch`` (per
    batch, one result or exception per item), ``localize_output`` (per query). ``search`` and
    ``localize`` run the same stages for one query in the calling thread.

    Args:
        embedder: an ``avlearn.embed.Embedder``.
        bundle: an open ``avlearn.index.bundle.Bundle`` (or None: retrieval answers NotReady).
        bundle_path: what the bundle was opened from (for reloads of the same path).
        limits: request limits.
        decoder: how query media is decoded.
    """

    def __init__(
        self, embedder: QueryEmbedder | None, bundle: Bundle | None, bundle_path: Path | None, limits: Limits, decoder: MediaDecoder | None = None
    ) -> None:
        self.embedder = embedder
        self.bundle = bundle
        self.bundle_path = bundle_path
        self.limits = limits
        self.decoder = decoder or MediaDecoder(limits)
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

    # -- checks ------------------------------------------------------------------------------
    def require_embedder(self) -> QueryEmbedder:
        if self.embedder is None:
            raise NotReady("no model is loaded (start the server with --checkpoint)")
        return self.embedder

    def require_bundle(self) -> Bundle:
        if self.bundle is None:
            raise NotReady("no index bundle is loaded (start the server with --bundle or call ReloadIndex)")
        return self.bundle

    def require_localizer(self) -> QueryEmbedder:
        emb = self.require_embedder()
        if not emb.has_localizer:
            raise NotReady("this server has no localization model (start it with --localizer-checkpoint, an AVOL-Net checkpoint)")
        return emb

    def check_k(self, k: int) -> int:
        """k = 0 → default_k; otherwise 1..max_k."""
        if k == 0:
            return self.limits.default_k
        if not 1 <= k <= self.limits.max_k:
            raise InvalidQuery(f"k must be between 1 and {self.limits.max_k}, got {k}")
        return k

    # -- per-query stages (blocking) -----------------------------------------------------------
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

    def decode_image(self, q: MediaQuery) -> np.ndarray:
        """An image query (encoded bytes or video + time) → (H, W, 3) uint8 at the model's size.

        The resize is the model's own (``avlearn.media.resize_frames``, what its preprocessor
        does), done here per query so a batch of frames goes through the model as one array.
        """
        from avlearn.media import resize_frames

        emb = self.require_embedder()
        size = (int(emb.image_size_px[0]), int(emb.image_size_px[1]))
        frame = self._image_of(q, size)
        return resize_frames(frame[None], size)[0]

    def decode_audio(self, q: MediaQuery) -> np.ndarray:
        """An audio query → (W, segment samples) float32: consecutive segment windows (averaged after embedding)."""
        emb = self.require_embedder()
        seg = int(round(float(emb.segment_sec) * int(emb.sample_rate_hz)))
        return audio_windows(self._audio_of(q, emb), seg)

    def stored_vector(self, modality: str, segment_id: int) -> np.ndarray:
        bundle = self.require_bundle()
        try:
            return bundle.vector(modality, int(segment_id))
        except KeyError:
            raise UnknownSegment(f"segment {segment_id} is not in bundle {self.bundle_id} ({modality} index)") from None

    def given_vector(self, q: MediaQuery) -> np.ndarray:
        """A query given as a vector → (D,) L2-normalised (the size is checked)."""
        emb = self.require_embedder()
        v = np.asarray(q.vector, np.float32).reshape(-1)
        if v.shape[0] != int(emb.dim):
            raise InvalidQuery(f"the query vector has {v.shape[0]} values; this server's embeddings have {emb.dim}")
        return _normalise(v)

    # -- batch stages (blocking; one result or exception per item) ------------------------------
    def embed_images(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """N frames (H, W, 3) uint8 at the model's size → N (D,) L2-normalised vectors, one forward pass."""
        vecs = np.asarray(self.require_embedder().embed_images(np.stack(frames)), np.float32)
        return [_normalise(v) for v in vecs]

    def embed_audio(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """N (W_i, samples) window stacks → N (D,) vectors (each the re-normalised mean of its windows), one forward pass."""
        vecs = np.asarray(self.require_embedder().embed_audio(np.concatenate(windows)), np.float32)
        out, start = [], 0
        for w in windows:
            out.append(_normalise(vecs[start : start + len(w)].mean(axis=0)))
            start += len(w)
        return out

    def localize_batch(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[Heatmap]:
        """N (frame (H, W, 3) uint8, wave (n,) float32) pairs → N heatmaps, one forward pass."""
        emb = self.require_localizer()
        return list(emb.localize_batch([f for f, _ in pairs], [w for _, w in pairs]))

    def search_batch(self, modality: str, vectors: list[np.ndarray], k: int) -> list[list]:
        """N (D,) normalised vectors → N top-k hit lists of ``modality``, one FAISS call and one metadata lookup."""
        return self.require_bundle().search(modality, np.stack(vectors), k)

    # -- localization stages -------------------------------------------------------------------
    def check_localize(self, audio: MediaQuery, image: MediaQuery) -> None:
        self.require_localizer()
        for name, q in (("audio", audio), ("image", image)):
            if q.kind() == "vector":
                raise InvalidQuery(f"Localize needs {name} media (bytes, a video with a time, or a segment id), not a vector")

    def _segment_media(self, segment_id: int, modality: str) -> np.ndarray:
        """Decode a bundle segment's frame or audio from its source file (Localize by segment id)."""
        from avlearn.media import read_audio, read_frames

        bundle = self.require_bundle()
        try:
            meta = bundle.segment(int(segment_id))
        except KeyError:
            raise UnknownSegment(f"segment {segment_id} is not in bundle {self.bundle_id}") from None
        if not Path(meta.source).is_file():
            raise NotReady(f"the source media of segment {segment_id} ({meta.source}) is not available on this server")
        if modality == IMAGE:
            return read_frames(meta.source, [meta.start_sec]).images[0]
        emb = self.require_embedder()
        return read_audio(meta.source, meta.start_sec, float(emb.segment_sec), int(emb.sample_rate_hz))

    def localize_inputs(self, audio: MediaQuery, image: MediaQuery) -> tuple[np.ndarray, np.ndarray]:
        """Decode a Localize query → (frame (H, W, 3) uint8 at its own size, wave (n,) float32: its first segment)."""
        emb = self.require_localizer()
        frame = self._segment_media(image.segment_id, IMAGE) if image.segment_id is not None else self._image_of(image)
        if audio.segment_id is not None:
            wave = self._segment_media(audio.segment_id, AUDIO)
        else:
            wave = self._audio_of(audio, emb)[: int(round(float(emb.segment_sec) * int(emb.sample_rate_hz)))]
        return frame, wave

    def localize_output(self, frame: np.ndarray, heat: Heatmap, overlay: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, float], float, bytes | None]:
        """(heatmap (H, W) at the frame's size capped at max_heatmap_pixels, grid (h, w), peak (y, x) normalised, score, overlay PNG or None)."""
        from avlearn.embed.heatmap import render_overlay, upsample_heatmap

        grid = np.asarray(heat.grid, np.float32)
        h, w = frame.shape[:2]
        scale = min(1.0, math.sqrt(self.limits.max_heatmap_pixels / float(h * w)))
        size = (max(1, int(h * scale)), max(1, int(w * scale)))
        heatmap = np.asarray(upsample_heatmap(grid, size), np.float32)
        png = render_overlay(frame, grid) if overlay else None
        return heatmap, grid, (float(heat.peak_yx[0]), float(heat.peak_yx[1])), float(heat.score), png

    # -- one query in the calling thread ------------------------------------------------------
    def query_vector(self, modality: str, q: MediaQuery, check: Check = no_check, sw: Stopwatch | None = None) -> np.ndarray:
        """The (D,) L2-normalised embedding of a query of ``modality`` ("audio" | "image")."""
        sw = sw or Stopwatch()
        kind = q.kind()
        if kind == "segment_id":
            assert q.segment_id is not None
            return self.stored_vector(modality, q.segment_id)
        if kind == "vector":
            return self.given_vector(q)
        check("decode")
        with sw.stage("decode"):
            media = self.decode_image(q) if modality == IMAGE else self.decode_audio(q)
        check("embed")
        with sw.stage("embed"):
            return (self.embed_images if modality == IMAGE else self.embed_audio)([media])[0]

    def search(self, query_modality: str, target_modality: str, q: MediaQuery, k: int, check: Check = no_check) -> SearchOutcome:
        """Top-k segments of ``target_modality`` for a query of ``query_modality``.

        A same-modality query given by segment id leaves that segment out of its own results.
        """
        k = self.check_k(k)
        self.require_embedder()
        self.require_bundle()
        sw = Stopwatch()
        vec = self.query_vector(query_modality, q, check, sw)
        exclude = self_match(query_modality, target_modality, q)
        check("search")
        with sw.stage("search"):
            hits = self.search_batch(target_modality, [vec], k + (exclude is not None))[0]
        return SearchOutcome(drop_self(hits, exclude, k), self.bundle_id, sw.done())

    def search_clips(self, query_modality: str, target_modality: str, q: MediaQuery, k: int, check: Check = no_check) -> SearchOutcome:
        """``search`` with hits grouped per clip: the top-k clips, each its best segment.

        A same-modality query given by segment id leaves its whole clip out.
        """
        k = self.check_k(k)
        self.require_embedder()
        self.require_bundle()
        sw = Stopwatch()
        vec = self.query_vector(query_modality, q, check, sw)
        check("search")
        with sw.stage("search"):
            hits = self.clip_hits(target_modality, vec, k, own_clip(self.require_bundle(), query_modality, target_modality, q))
        return SearchOutcome(hits, self.bundle_id, sw.done())

    def clip_hits(self, modality: str, vector: np.ndarray, k: int, exclude_clip: str | None) -> list:
        """The top-k clips of ``modality`` for one (D,) vector, each its best segment, clip ``exclude_clip`` left out."""
        exclude = [] if exclude_clip is None else [exclude_clip]
        return self.require_bundle().search_clips(modality, vector[None], k, exclude_clips=[exclude])[0]

    def localize(self, audio: MediaQuery, image: MediaQuery, *, overlay: bool = False, check: Check = no_check) -> LocalizeOutcome:
        """Where in ``image`` the sound of ``audio`` comes from (AVOL-Net heatmap)."""
        self.check_localize(audio, image)
        sw = Stopwatch()
        check("decode")
        with sw.stage("decode"):
            frame, wave = self.localize_inputs(audio, image)
        check("embed")
        with sw.stage("embed"):
            heat = self.localize_batch([(frame, wave)])[0]
            heatmap, grid, peak, score, png = self.localize_output(frame, heat, overlay)
        return LocalizeOutcome(heatmap, grid, peak, score, png, self.bundle_id, sw.done())

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


def self_match(query_modality: str, target_modality: str, q: MediaQuery) -> int | None:
    """The segment a same-modality query by segment id must leave out of its own results (None: nothing)."""
    return q.segment_id if (q.segment_id is not None and query_modality == target_modality) else None


def own_clip(bundle: Bundle, query_modality: str, target_modality: str, q: MediaQuery) -> str | None:
    """The clip a same-modality query by segment id must leave out of grouped results (None: nothing)."""
    seg = self_match(query_modality, target_modality, q)
    return None if seg is None else bundle.segment(seg).clip_id


def drop_self(hits: list, exclude: int | None, k: int) -> list:
    """``hits`` without segment ``exclude``, at most k."""
    if exclude is None:
        return hits[:k]
    return [h for h in hits if h.segment_id != exclude][:k]
