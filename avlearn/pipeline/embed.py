"""``run_embed``: batch-embed a video archive into resumable embedding shards.

See ``docs/indexer.md`` for the shard layout and the resume semantics.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avlearn.atomic import atomic_write_json
from avlearn.pipeline.reader import DecodeConfig, Decoded, check_shard_dir, list_clips, list_shard_units, plan_units, read_plan, write_plan
from avlearn.pipeline.runner import RunState, run_local, run_ray
from avlearn.pipeline.writer import ERRORS_JSONL, SUMMARY_JSON, clean_temp, done_units, read_marker, rebuild_logs

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_FILES_PER_SHARD = 16
# plan.json keys that must match for a resumed run to continue the same output
_RESUME_KEYS = ("format_version", "input", "checkpoint_hash", "segment_sec", "hop_sec", "dtype", "files_per_unit", "image_size_px", "sample_rate_hz", "dim")
# what identifies a prepared shard dir's content (saved in plan.json, checked on resume)
_PREPARE_KEYS = ("source", "params", "num_clips", "clips_sha256")


def run_embed(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    engine: str = "local",
    workers: int = 2,
    segment_sec: float = 1.0,
    hop_sec: float = 1.0,
    batch_size: int = 64,
    files_per_shard: int = DEFAULT_FILES_PER_SHARD,
    dtype: str = "float16",
    device: str = "auto",
    safe: bool = True,
    ray_address: str | None = None,
    ray_actors: int = 1,
    show_progress: bool = True,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Embed every clip of ``data`` (raw source: folder | manifest | AudioSet csv, or a
    shard dir made by ``avlearn prepare``) into ``out``.

    Each clip is cut into grid-aligned segments (``read_segments``; a shard dir already
    holds them: frames are resized to the model's size, audio resampled to its rate);
    each segment gets the image embedding of its frame and the audio embedding of its
    audio (files without audio: image-only segments, listed in ``no_audio.jsonl``). Work
    is split into fixed units: ``files_per_shard`` clips of a raw source, or one input
    tar of a shard dir (``files_per_shard`` is then unused). Every finished unit is an
    atomically published shard, so re-running the same command resumes where it stopped.

    Args:
        engine: "local" (thread-driven sandboxed decoders + in-process inference) or "ray".
        workers: parallel decoders (local threads or Ray CPU tasks).
        batch_size: segments per forward pass.
        dtype: "float16" or "float32" for the stored vectors.
        safe: decode each file in a sandboxed child (crash/hang-proof).
        progress: called after every clip with {done, total, segments, errors, segments_per_sec}.
        should_stop: polled between clips; True stops early, leaving a resumable state.

    Returns:
        The JSON-ready summary (also written to ``out/summary.json``).

    Raises:
        ValueError: bad arguments, ``out`` holds a run with other settings/checkpoint/input,
            or a shard dir that was cut with another ``segment_sec`` / ``hop_sec`` or is unfinished.
    """
    from avlearn.embed import Embedder

    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', not {engine!r}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    if segment_sec <= 0 or hop_sec <= 0:
        raise ValueError("segment_sec and hop_sec must be > 0")
    from avlearn.data.sources import is_shard_dir

    shards = is_shard_dir(data)
    prepared = check_shard_dir(data, segment_sec, hop_sec) if shards else None  # fail before loading the model
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder.from_checkpoint(checkpoint, device=device)
    config = {
        "format_version": FORMAT_VERSION,
        "data": str(data),
        "checkpoint": str(checkpoint),
        "checkpoint_hash": embedder.checkpoint_hash,
        "dim": int(embedder.dim),
        "image_size_px": list(embedder.image_size_px),
        "sample_rate_hz": int(embedder.sample_rate_hz),
        "segment_sec": float(segment_sec),
        "hop_sec": float(hop_sec),
        "dtype": dtype,
        "input": "shards" if shards else "raw",
        "files_per_unit": int(prepared["params"]["clips_per_shard"]) if prepared else int(files_per_shard),
    }
    if prepared is not None:
        config["prepare"] = {k: prepared.get(k) for k in _PREPARE_KEYS}
        _warn_if_upsampled(data, prepared["params"], embedder)
    saved = read_plan(out)
    unit_shards: list[str] | None = None
    if saved is not None:
        old, units = saved
        was = {**{"input": "raw"}, **old}  # plans written before shard input existed are raw
        diff = {k: (was.get(k), config[k]) for k in _RESUME_KEYS if was.get(k) != config[k]}
        if diff:
            raise ValueError(f"{out} holds embeddings made with other settings {diff} (saved, now); use a new --out")
        if prepared is not None:
            if old.get("prepare") != config["prepare"]:
                raise ValueError(f"{out} holds embeddings of another prepared shard dir (or {data} was prepared again since); use a new --out")
            unit_shards = list(old["unit_shards"])
    elif prepared is not None:
        units, unit_shards, missing = list_shard_units(data)
        write_plan(out, {**config, "unit_shards": unit_shards}, units, missing)
    else:
        clips, missing = list_clips(data)
        units = plan_units(clips, files_per_shard)
        write_plan(out, config, units, missing)
    clean_temp(out)
    finished = done_units(out)
    pending = [u for u in range(len(units)) if u not in finished]
    total_files = sum(len(c) for c in units)
    done_files = sum(len(units[u]) for u in finished)
    prior_segments = sum(read_marker(out, u)["segments"] for u in finished)
    log.info("%s: %d units (%d done, %d to do), %d clips", out, len(units), len(finished), len(pending), total_files)

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=total_files, initial=done_files, unit="file", desc="embed", dynamic_ncols=True)
    t_run = time.perf_counter()
    stop = should_stop or (lambda: False)
    state: RunState

    def on_clip(dec: Decoded, n_segments: int) -> None:
        rate = state.segments / max(time.perf_counter() - t_run, 1e-9)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(seg=state.segments, seg_s=f"{rate:.1f}", err=state.errors, refresh=False)
        if progress is not None:
            progress(
                {
                    "done": done_files + state.files,
                    "total": total_files,
                    "segments": prior_segments + state.segments,
                    "errors": state.errors,
                    "segments_per_sec": rate,
                }
            )

    decode = DecodeConfig(
        tuple(embedder.image_size_px),
        int(embedder.sample_rate_hz),
        float(segment_sec),
        float(hop_sec),
        safe=safe,
        shard_dir=os.path.abspath(data) if shards else None,
    )
    state = RunState(out, units, pending, decode, dtype, int(embedder.dim), on_clip, stop, unit_shards=unit_shards)
    try:
        if engine == "local":
            from avlearn.pipeline.mapper import Mapper

            run_local(state, Mapper(embedder, batch_size), workers=workers)
        else:
            del embedder  # the actors load their own copy
            run_ray(state, str(checkpoint), workers=workers, batch_size=batch_size, actors=ray_actors, device=device, address=ray_address)
    finally:
        if bar is not None:
            bar.close()
    n_errors, n_no_audio = rebuild_logs(out)
    wall = time.perf_counter() - t_run
    finished = done_units(out)
    summary = {
        "out": str(out),
        "engine": engine,
        "workers": workers,
        "complete": len(finished) == len(units),
        "stopped": state.stopped,
        "units": len(units),
        "units_done": len(finished),
        "units_written": state.units_written,
        "units_skipped": len(units) - len(pending),
        "files_total": total_files,
        "files_processed": state.files,
        "segments": state.segments,
        "segments_total": sum(read_marker(out, u)["segments"] for u in finished),
        "errors": n_errors,
        "errors_file": str(out / ERRORS_JSONL),
        "files_no_audio": n_no_audio,
        "wall_sec": round(wall, 3),
        "setup_sec": round(t_run - t_start, 3),
        "segments_per_sec": round(state.segments / max(wall, 1e-9), 2),
        "files_per_sec": round(state.files / max(wall, 1e-9), 3),
        "stages_sec": {k: round(v, 3) for k, v in state.timings.items()},
    }
    atomic_write_json(out / SUMMARY_JSON, summary, sort_keys=True)
    log.info("embed summary: %s", json.dumps(summary))
    return summary


def _warn_if_upsampled(data: Any, params: dict, embedder: Any) -> None:
    """Log when the shards hold smaller frames or a lower audio rate than the model takes."""
    short = int(params.get("frame_size_px") or 0)
    if 0 < short < min(embedder.image_size_px):
        log.warning("%s stores frames with a %d px short side; the model takes %s: frames are upscaled", data, short, tuple(embedder.image_size_px))
    if int(params["sample_rate_hz"]) < int(embedder.sample_rate_hz):
        log.warning("%s stores audio at %d Hz; the model takes %d Hz: audio is upsampled", data, params["sample_rate_hz"], embedder.sample_rate_hz)


def embed_summary_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True)
