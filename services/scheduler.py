"""Runs queries for the asyncio server: blocking stages on bounded executors, model passes and
vector searches of concurrent queries gathered into batches (``services.batching``).

Blocking I/O (job store, Redis cache, reloads) has its own executor (``blocking``).
Per query, on the event loop: decode on the work executor (``workers`` threads) → one item in
the image / audio / Localize batcher (forward passes on the model executor, at most
``compute_slots`` batches at once, shared by the three kinds) → one item in the search batcher:
one FAISS call and one metadata lookup per batch, run on the loop thread itself for k <= 100
(about 0.1 ms a query, less than a hand-off to a thread would cost; every search that arrives
in the same loop iteration shares the call), on the work executor for larger k. The ``check(stage)``
hook is called before each stage; ``Timings.embed_ms`` and ``search_ms`` include the wait for
the batch.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from services.batching import Batcher, OnBatch, Slots
from services.engine import Engine, drop_self, own_clip, self_match
from services.errors import Check, no_check
from services.query_media import MediaQuery
from services.query_types import IMAGE, LocalizeOutcome, SearchOutcome, Stopwatch

T = TypeVar("T")

SEARCH_SLOTS = 2  # searches with a large k: batches at once on the work executor (each runs FAISS on one thread)
INLINE_MAX_K = 100  # searches up to this k run on the loop thread (~0.1 ms a query: less than a thread hand-off)
IO_THREADS = 8  # blocking I/O of the servicer: job store, Redis cache, reloads


class Scheduler:
    """Executors and batchers of one server.

    Args:
        workers: threads for decoding, searches and post-processing.
        compute_slots: model forward passes (batches) at once.
        max_batch: items per model batch; searches batch up to ``8 * max_batch`` vectors.
        max_batch_delay_sec: how long a lone model item may wait for company while a slot is free.
        on_batch: metrics hook, called after each batch with (kind, size, split).
    """

    def __init__(self, *, workers: int, compute_slots: int, max_batch: int, max_batch_delay_sec: float, on_batch: OnBatch | None = None) -> None:
        self.work = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="work")
        self.io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="io")
        self.model = ThreadPoolExecutor(max_workers=compute_slots, thread_name_prefix="model")
        model_slots = Slots(compute_slots)
        common: dict[str, Any] = dict(executor=self.model, slots=model_slots, max_batch=max_batch, max_delay_sec=max_batch_delay_sec, on_batch=on_batch)
        self.images = Batcher("image", lambda engine, frames: engine.embed_images(frames), **common)
        self.audio = Batcher("audio", lambda engine, windows: engine.embed_audio(windows), **common)
        self.localizer = Batcher("localize", lambda engine, pairs: engine.localize_batch(pairs), **common)
        search = lambda key, vectors: key[0].search_batch(key[1], vectors, key[2])  # noqa: E731 - key: (engine, modality, k)
        self.searches = Batcher("search", search, executor=None, slots=Slots(1), max_batch=8 * max_batch, on_batch=on_batch)
        self.large_searches = Batcher("search", search, executor=self.work, slots=Slots(SEARCH_SLOTS), max_batch=max_batch, on_batch=on_batch)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the work executor."""
        return await asyncio.get_running_loop().run_in_executor(self.work, functools.partial(fn, *args))

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the I/O executor (job store, Redis, reloads: work that waits rather than computes)."""
        return await asyncio.get_running_loop().run_in_executor(self.io, functools.partial(fn, *args))

    async def query_vector(self, engine: Engine, modality: str, q: MediaQuery, check: Check, sw: Stopwatch) -> np.ndarray:
        """The (D,) L2-normalised embedding of a query of ``modality``."""
        kind = q.kind()
        if kind == "segment_id":
            assert q.segment_id is not None
            return engine.stored_vector(modality, q.segment_id)
        if kind == "vector":
            return engine.given_vector(q)
        engine.require_embedder()
        check("decode")
        with sw.stage("decode"):
            media = await self.run(engine.decode_image if modality == IMAGE else engine.decode_audio, q)
        check("embed")
        with sw.stage("embed"):
            return await (self.images if modality == IMAGE else self.audio).submit(engine, media)

    async def search(self, engine: Engine, query_modality: str, target_modality: str, q: MediaQuery, k: int, check: Check = no_check) -> SearchOutcome:
        """``Engine.search`` with batched stages."""
        k = engine.check_k(k)
        engine.require_embedder()
        engine.require_bundle()
        sw = Stopwatch()
        vec = await self.query_vector(engine, query_modality, q, check, sw)
        exclude = self_match(query_modality, target_modality, q)
        check("search")
        with sw.stage("search"):
            kk = k + (exclude is not None)
            hits = await (self.searches if kk <= INLINE_MAX_K else self.large_searches).submit((engine, target_modality, kk), vec)
        return SearchOutcome(drop_self(hits, exclude, k), engine.bundle_id, sw.done())

    async def search_clips(self, engine: Engine, query_modality: str, target_modality: str, q: MediaQuery, k: int, check: Check = no_check) -> SearchOutcome:
        """``Engine.search_clips`` with the batched embedding stage; the grouped search runs on the work executor."""
        k = engine.check_k(k)
        engine.require_embedder()
        bundle = engine.require_bundle()
        sw = Stopwatch()
        vec = await self.query_vector(engine, query_modality, q, check, sw)
        check("search")
        with sw.stage("search"):
            hits = await self.run(engine.clip_hits, target_modality, vec, k, own_clip(bundle, query_modality, target_modality, q))
        return SearchOutcome(hits, engine.bundle_id, sw.done())

    async def localize(self, engine: Engine, audio: MediaQuery, image: MediaQuery, *, overlay: bool = False, check: Check = no_check) -> LocalizeOutcome:
        """``Engine.localize`` with a batched forward pass."""
        engine.check_localize(audio, image)
        sw = Stopwatch()
        check("decode")
        with sw.stage("decode"):
            frame, wave = await self.run(engine.localize_inputs, audio, image)
        check("embed")
        with sw.stage("embed"):
            heat = await self.localizer.submit(engine, (frame, wave))
            if overlay:  # PNG encoding: off the loop
                heatmap, grid, peak, score, png = await self.run(engine.localize_output, frame, heat, overlay)
            else:  # an upsampling of ~0.1 ms: cheaper here than a thread hand-off
                heatmap, grid, peak, score, png = engine.localize_output(frame, heat, overlay)
        return LocalizeOutcome(heatmap, grid, peak, score, png, engine.bundle_id, sw.done())

    def close(self) -> None:
        self.io.shutdown(wait=False, cancel_futures=True)
        self.work.shutdown(wait=False, cancel_futures=True)
        self.model.shutdown(wait=False, cancel_futures=True)
