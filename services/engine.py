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
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.media import errors as media_errors
from services.settings import Limits

log = logging.getLogger(__name__)

AUDIO, IMAGE = "audio", "image"
Check = Callable[[str], None]


class QueryError(Exception):
    """Base of engine errors; each maps to one gRPC status (services.servicer)."""


class InvalidQuery(QueryError, ValueError):
    """The request is malformed or over a limit (INVALID_ARGUMENT)."""


class UnknownSegment(QueryError, KeyError):
    """A segment id is not in the loaded bundle (NOT_FOUND)."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else "unknown segment"


class NotReady(QueryError):
    """The server cannot answer this yet: no bundle, no localizer, source media absent (FAILED_PRECONDITION)."""


class Abandoned(QueryError):
    """The client went away or its deadline passed; the query stopped at ``stage``."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"stopped before {stage}: {reason}")


def _no_check(stage: str) -> None:
    return None


@dataclass(frozen=True)
class MediaQuery:
    """One query input: exactly one of encoded media, a video + time, a segment id, a vector."""

    data: bytes | None = None
    video: bytes | None = None
    time_sec: float = 0.0
    segment_id: int | None = None
    vector: np.ndarray | None = None

    def kind(self) -> str:
        given = [n for n, v in (("data", self.data), ("video", self.video), ("segment_id", self.segment_id), ("vector", self.vector)) if v is not None]
        if len(given) != 1:
            raise InvalidQuery("give exactly one input: encoded media bytes, a video with a time, a segment id, or a vector")
        return given[0]


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


class MediaDecoder:
    """Decodes query media under the limits, in-process or (``safe``) in a sandboxed child."""

    def __init__(self, limits: Limits, *, safe: bool = False, timeout_sec: float = 20.0) -> None:
        self.limits = limits
        self.safe = safe
        self.timeout_sec = timeout_sec

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.safe:
            from avlearn.media import safe_call

            return safe_call(fn, *args, path="<query>", timeout_sec=self.timeout_sec, **kwargs)
        return fn(*args, **kwargs)

    def image(self, data: bytes) -> np.ndarray:
        """Encoded image → (H, W, 3) uint8."""
        from avlearn.media import read_image

        return self._call(read_image, data, max_pixels=self.limits.max_image_pixels)

    def _probe_video(self, data: bytes, time_sec: float):
        from avlearn.media import probe

        if not math.isfinite(time_sec) or time_sec < 0:
            raise InvalidQuery(f"time_sec must be a finite number >= 0, got {time_sec}")
        info = self._call(probe, data)
        return info

    def video_frame(self, data: bytes, time_sec: float) -> np.ndarray:
        """The frame on screen at ``time_sec`` of an encoded video → (H, W, 3) uint8."""
        from avlearn.media import read_frames

        info = self._probe_video(data, time_sec)
        if not info.has_video:
            raise media_errors.NoVideoStream("", "the file has no video stream")
        pixels = (info.width_px or 0) * (info.height_px or 0)
        if pixels > self.limits.max_image_pixels:
            raise media_errors.MediaTooLarge(
                "", f"video frames are {info.width_px}x{info.height_px} = {pixels} pixels, over the limit of {self.limits.max_image_pixels}"
            )
        return self._call(read_frames, data, [float(time_sec)]).images[0]

    def video_audio(self, data: bytes, time_sec: float, duration_sec: float, sample_rate_hz: int) -> np.ndarray:
        """``duration_sec`` of audio from ``time_sec`` of an encoded video → (n,) float32."""
        from avlearn.media import read_audio

        self._probe_video(data, time_sec)
        return self._call(read_audio, data, float(time_sec), float(duration_sec), sample_rate_hz)

    def audio(self, data: bytes, sample_rate_hz: int) -> np.ndarray:
        """An encoded audio clip (at most max_audio_sec) → (n,) float32 mono at ``sample_rate_hz``."""
        from avlearn.media import probe, read_audio

        limit = self.limits.max_audio_sec
        info = self._call(probe, data)
        if not info.has_audio:
            raise media_errors.NoAudioStream("", "the data has no audio stream")
        if info.duration_sec and info.duration_sec > limit + 0.05:
            raise InvalidQuery(f"audio is {info.duration_sec:.2f} s long, over the limit of {limit:g} s")
        wave = self._call(read_audio, data, 0.0, None, sample_rate_hz)
        if len(wave) > (limit + 0.05) * sample_rate_hz:
            raise InvalidQuery(f"audio is {len(wave) / sample_rate_hz:.2f} s long, over the limit of {limit:g} s")
        if len(wave) == 0:
            raise media_errors.CorruptMedia("", "the audio has no samples")
        return wave


def audio_windows(wave: np.ndarray, segment_samples: int) -> np.ndarray:
    """Cut (n,) audio into consecutive (W, segment_samples) windows; a short tail is kept only if it is
    at least half a window or the only one (zero-padded)."""
    n = len(wave)
    starts = list(range(0, max(n - segment_samples, 0) + 1, segment_samples))
    tail = starts[-1] + segment_samples
    if n - tail >= segment_samples // 2:
        starts.append(tail)
    out = np.zeros((len(starts), segment_samples), np.float32)
    for i, s in enumerate(starts):
        piece = wave[s : s + segment_samples]
        out[i, : len(piece)] = piece
    return out


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidQuery("the query vector must be finite and non-zero")
    return (v / norm).astype(np.float32)


class ComputeGate:
    """At most ``slots`` model forward passes at once; the other queries wait their turn, first come first served.

    Without it, N concurrent queries all share the cores at once (and the GIL between their
    torch calls): every query stretches and some starve. A waiter keeps its place in the queue
    while it polls ``check`` (its deadline, a client that left) every 50 ms; a slot that is
    released goes to the oldest waiter.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"compute slots must be >= 1, got {slots}")
        self.slots = int(slots)
        self._free = self.slots
        self._queue: deque[threading.Event] = deque()
        self._lock = threading.Lock()

    def _release_locked(self) -> None:
        if self._queue:
            self._queue.popleft().set()  # the slot passes straight to the oldest waiter
        else:
            self._free += 1

    @contextmanager
    def __call__(self, check: Check = _no_check) -> Iterator[None]:
        with self._lock:
            ticket = None
            if self._free > 0 and not self._queue:
                self._free -= 1
            else:
                ticket = threading.Event()
                self._queue.append(ticket)
        if ticket is not None:
            try:
                while not ticket.wait(0.05):
                    check("queued")
            except BaseException:
                with self._lock:
                    if ticket.is_set():  # the slot arrived as we gave up: pass it on
                        self._release_locked()
                    else:
                        self._queue.remove(ticket)
                raise
        try:
            yield
        finally:
            with self._lock:
                self._release_locked()


def default_compute_slots() -> int:
    """Cores / torch threads per forward pass (>= 1): enough passes at once to keep every core busy."""
    import torch

    return max(1, (os.cpu_count() or 1) // max(1, torch.get_num_threads()))


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
        self, embedder: Any, bundle: Any | None, bundle_path: Path | None, limits: Limits, decoder: MediaDecoder | None = None, gate: ComputeGate | None = None,
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
    def _require_embedder(self) -> Any:
        if self.embedder is None:
            raise NotReady("no model is loaded (start the server with --checkpoint)")
        return self.embedder

    def _require_bundle(self) -> Any:
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

    def _image_of(self, q: MediaQuery) -> np.ndarray:
        if q.data is not None:
            return self.decoder.image(q.data)
        return self.decoder.video_frame(q.video, q.time_sec)

    def _audio_of(self, q: MediaQuery) -> np.ndarray:
        sr = int(self.embedder.sample_rate_hz)
        if q.data is not None:
            return self.decoder.audio(q.data, sr)
        return self.decoder.video_audio(q.video, q.time_sec, float(self.embedder.segment_sec), sr)

    def _stored_vector(self, modality: str, segment_id: int) -> np.ndarray:
        bundle = self._require_bundle()
        try:
            return bundle.vector(modality, int(segment_id))
        except KeyError:
            raise UnknownSegment(f"segment {segment_id} is not in bundle {self.bundle_id} ({modality} index)") from None

    def query_vector(self, modality: str, q: MediaQuery, check: Check = _no_check, sw: _Stopwatch | None = None) -> np.ndarray:
        """The (D,) L2-normalised embedding of a query of ``modality`` ("audio" | "image")."""
        sw = sw or _Stopwatch()
        kind = q.kind()
        if kind == "segment_id":
            return self._stored_vector(modality, q.segment_id)
        if kind == "vector":
            v = np.asarray(q.vector, np.float32).reshape(-1)
            if v.shape[0] != int(self.embedder.dim):
                raise InvalidQuery(f"the query vector has {v.shape[0]} values; this server's embeddings have {self.embedder.dim}")
            return _normalise(v)
        check("decode")
        with sw.stage("decode"):
            media = self._image_of(q) if modality == IMAGE else self._audio_of(q)
        check("embed")
        with self.gate(check), sw.stage("embed"):
            if modality == IMAGE:
                vec = self.embedder.embed_images(media[None])[0]
            else:
                seg = int(round(float(self.embedder.segment_sec) * int(self.embedder.sample_rate_hz)))
                vecs = self.embedder.embed_audio(audio_windows(media, seg))
                vec = np.asarray(vecs, np.float32).mean(axis=0)
        return _normalise(np.asarray(vec, np.float32))

    def search(self, query_modality: str, target_modality: str, q: MediaQuery, k: int, check: Check = _no_check) -> SearchOutcome:
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
        return read_audio(meta.source, meta.start_sec, float(self.embedder.segment_sec), int(self.embedder.sample_rate_hz))

    def localize(self, audio: MediaQuery, image: MediaQuery, *, overlay: bool = False, check: Check = _no_check) -> LocalizeOutcome:
        """Where in ``image`` the sound of ``audio`` comes from (AVOL-Net heatmap)."""
        from avlearn.embed.heatmap import render_overlay, upsample_heatmap

        self._require_embedder()
        if not getattr(self.embedder, "has_localizer", False):
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
                wave = self._audio_of(audio)
                wave = wave[: int(round(float(self.embedder.segment_sec) * int(self.embedder.sample_rate_hz)))]
        check("embed")
        with self.gate(check), sw.stage("embed"):
            heat = self.embedder.localize(frame, wave)
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


def open_bundle(path: Path, embedder: Any, *, strict_checkpoint: bool = True) -> Any:
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
