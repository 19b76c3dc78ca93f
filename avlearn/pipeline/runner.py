"""Runner stage: drive reader -> mapper -> writer over the pending units, locally or on Ray.

Local engine: decoding runs in ``workers`` threads, each decoding one file at a time in
a sandboxed single-threaded child (``avlearn.media.safe_call``); inference runs in the
calling thread on batches as decoded clips arrive. A bounded window of in-flight files
keeps decoding ahead of inference without unbounded memory. For a prepared shard dir a
decode job is one whole input tar (JPEG/FLAC decoding in the thread; no sandbox), and
the window is ``workers + 1`` tars.

Ray engine: a Ray Data pipeline over the same stages: decode as CPU tasks
(``decode_clip``), the model as actors (``Mapper``; one GPU each when the cluster
has GPUs), and the driver assembling units and writing shards (``UnitBuilder``,
``write_shard``). Rows arrive out of order; a unit is written once all its clips are in.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.spans import ClipSpan
from avlearn.pipeline.mapper import EmbeddedClip, Mapper, UnitBuilder
from avlearn.pipeline.reader import ClipJob, DecodeConfig, Decoded, UnitJob, decode_clip, decode_shard_unit, iter_jobs, iter_unit_jobs
from avlearn.pipeline.writer import rebuild_logs, write_shard

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """Shared bookkeeping of one run: counters, stage timings, progress and stop hooks."""

    out: Path
    units: list[list[ClipSpan]]
    pending: list[int]
    decode: DecodeConfig
    dtype: str
    dim: int
    on_clip: Callable[[Decoded, int], None]
    should_stop: Callable[[], bool]
    files: int = 0
    segments: int = 0
    errors: int = 0
    units_written: int = 0
    stopped: bool = False
    timings: dict = field(default_factory=lambda: {"decode": 0.0, "embed": 0.0, "write": 0.0})
    unit_shards: list[str] | None = None  # input tar of each unit (prepared shard dir), else None

    def account(self, dec: Decoded, n_segments: int) -> None:
        self.files += 1
        self.segments += n_segments
        self.errors += dec.error is not None
        self.timings["decode"] += dec.decode_sec
        self.on_clip(dec, n_segments)

    def write(self, builder: UnitBuilder) -> None:
        rows = builder.finish(self.dtype)  # embeds the unit's last partial batch (counted as embed time)
        t0 = time.perf_counter()
        marker = {
            "files": builder.num_clips,
            "errors": builder.errors,
            "no_audio": builder.no_audio,
            "gaps": builder.gaps,
            "timings": {"decode_sec": round(builder.decode_sec, 4)},
        }
        write_shard(self.out, builder.unit, rows, marker)
        rebuild_logs(self.out)
        self.units_written += 1
        self.timings["write"] += time.perf_counter() - t0


def _decode_one(job: ClipJob, cfg: DecodeConfig) -> list[Decoded]:
    return [decode_clip(job, cfg)]


def run_local(state: RunState, mapper: Mapper, *, workers: int = 2, prefetch: int | None = None) -> None:
    """Process ``state.pending`` units in order with a thread pool of decoders.

    Raw sources: one job per clip (sandboxed child), ``prefetch`` (default max(4 * workers, 8))
    clips in flight. Shard dirs: one job per input tar, ``prefetch`` (default workers + 1) tars.
    """
    jobs: Any
    if state.unit_shards is None:
        jobs = ((_decode_one, job) for job in iter_jobs(state.units, state.pending))
        window = prefetch or max(4 * workers, 8)
    else:
        jobs = ((decode_shard_unit, job) for job in iter_unit_jobs(state.units, state.pending, state.unit_shards))
        window = prefetch or max(1, workers) + 1
    inflight: deque[Future] = deque()
    builder: UnitBuilder | None = None
    embed0 = mapper.embed_sec
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as pool:

        def fill() -> None:
            while len(inflight) < window:
                item = next(jobs, None)
                if item is None:
                    return
                fn, job = item
                inflight.append(pool.submit(fn, job, state.decode))

        fill()
        try:
            while inflight and not state.stopped:
                if state.should_stop():  # polled once per clip, before waiting for its decode
                    state.stopped = True
                    break
                decoded: list[Decoded] = inflight.popleft().result()
                fill()
                for i, dec in enumerate(decoded):
                    if i and state.should_stop():
                        state.stopped = True
                        break
                    if builder is None:
                        builder = UnitBuilder(dec.job.unit, len(state.units[dec.job.unit]), mapper)
                    builder.add_decoded(dec)
                    state.account(dec, len(dec.segments))
                    if builder.complete:
                        state.write(builder)
                        builder = None
        finally:
            for fut in inflight:
                fut.cancel()
            state.timings["embed"] += mapper.embed_sec - embed0


# --- Ray -----------------------------------------------------------------------


def _ray_decode(row: dict[str, Any], cfg: dict) -> dict[str, Any]:
    job = ClipJob(int(row["unit"]), int(row["position"]), ClipSpan.from_dict(json.loads(row["clip"])))
    dec = decode_clip(job, DecodeConfig(**cfg))
    return {"unit": job.unit, "position": job.position, "payload": pickle.dumps(dec, protocol=5)}


def _ray_decode_unit(row: dict[str, Any], cfg: dict) -> list[dict[str, Any]]:
    """One input tar -> one row per clip (flat_map)."""
    job = UnitJob(int(row["unit"]), str(row["shard"]), tuple(ClipSpan.from_dict(c) for c in json.loads(row["clips"])))
    return [{"unit": d.job.unit, "position": d.job.position, "payload": pickle.dumps(d, protocol=5)} for d in decode_shard_unit(job, DecodeConfig(**cfg))]


class _RayEmbed:
    """Ray actor: holds one Embedder, embeds batches of decoded files."""

    def __init__(self, checkpoint: str, batch_size: int, device: str) -> None:
        from avlearn.embed import Embedder

        self.mapper = Mapper(Embedder.from_checkpoint(checkpoint, device=device), batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decs: list[Decoded] = [pickle.loads(p) for p in batch["payload"]]
        segs = [s for d in decs if d.error is None for s in d.segments]
        image, audio, has_audio = self.mapper.embed_segments(segs)
        out, lo = [], 0
        for d in decs:
            n = len(d.segments) if d.error is None else 0
            clip = None
            if n:
                idx = np.array([s.index for s in d.segments])
                start = np.array([s.start_sec for s in d.segments], np.float64)
                clip = EmbeddedClip(d.job, idx, start, image[lo : lo + n], audio[lo : lo + n], has_audio[lo : lo + n])
            lo += n
            light = Decoded(d.job, [], d.error, d.decode_sec, d.has_audio)
            out.append(pickle.dumps((light, clip, n, self.mapper.embed_sec), protocol=5))
            self.mapper.embed_sec = 0.0
        return {"unit": batch["unit"], "position": batch["position"], "payload": np.array(out, dtype=object)}


def run_ray(
    state: RunState, checkpoint: str, *, workers: int = 2, batch_size: int = 64, actors: int = 1, device: str = "auto", address: str | None = None
) -> None:
    """Process ``state.pending`` units with Ray Data (decode tasks -> embed actors -> driver writer)."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the Ray engine needs the 'ray' extra: pip install 'avlearn[ray]' (ray[data])") from exc
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = max(2, workers)
        ray.init(**kw)
        started = True
    try:
        if state.unit_shards is None:
            items = [{"unit": j.unit, "position": j.position, "clip": json.dumps(j.clip.to_dict())} for j in iter_jobs(state.units, state.pending)]
        else:
            items = [
                {"unit": j.unit, "shard": j.shard, "clips": json.dumps([c.to_dict() for c in j.clips])}
                for j in iter_unit_jobs(state.units, state.pending, state.unit_shards)
            ]
        if not items:
            return
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        cfg = {k: getattr(state.decode, k) for k in state.decode.__dataclass_fields__}
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * max(1, workers))))
        if state.unit_shards is None:
            ds = ds.map(_ray_decode, fn_kwargs={"cfg": cfg}, num_cpus=1, concurrency=max(1, workers))
        else:
            ds = ds.flat_map(_ray_decode_unit, fn_kwargs={"cfg": cfg}, num_cpus=1, concurrency=max(1, workers))
        files_per_batch = max(1, batch_size // 8)
        ds = ds.map_batches(
            _RayEmbed,
            fn_constructor_kwargs={"checkpoint": str(checkpoint), "batch_size": batch_size, "device": device},
            batch_size=files_per_batch,
            batch_format="numpy",
            concurrency=max(1, actors),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
        )
        waiting: dict[int, dict[int, tuple[Decoded, EmbeddedClip | None, int]]] = {}
        for row in ds.iter_rows():
            if state.should_stop():
                state.stopped = True
                break
            dec, clip, n, embed_sec = pickle.loads(row["payload"])
            state.timings["embed"] += embed_sec
            state.account(dec, n)
            got = waiting.setdefault(dec.job.unit, {})
            got[dec.job.position] = (dec, clip, n)
            size = len(state.units[dec.job.unit])
            if len(got) == size:
                builder = UnitBuilder(dec.job.unit, size, None, dim=state.dim)
                for pos in range(size):
                    d, c, n_seg = got[pos]
                    builder.add_embedded(d, c, n_seg)
                state.write(builder)
                del waiting[dec.job.unit]
    finally:
        if started:
            ray.shutdown()
