"""Reader stage: list the archive, split it into fixed work units, decode one clip.

The plan (which clip belongs to which unit, at which position) is computed once from
the sorted clip list and saved in ``EMB/plan.json`` + ``EMB/clips.jsonl``; a restart
reuses it, so unit ``u`` always means the same clips and a finished shard is never
redone or duplicated.

Segment ids are ``(unit << 40) | (position << 20) | segment_index``: stable, unique
across the archive, ascending in shard order (up to 2^23 units, 2^20 clips per unit,
2^20 segments per clip).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from avlearn.data.spans import ClipSpan
from avlearn.media import MediaError, read_segments, safe_call

UNIT_SHIFT = 40
POSITION_SHIFT = 20
MAX_SEGMENTS_PER_CLIP = 1 << POSITION_SHIFT
MAX_CLIPS_PER_UNIT = 1 << (UNIT_SHIFT - POSITION_SHIFT)
MAX_UNITS = 1 << (63 - UNIT_SHIFT)


def segment_id(unit: int, position: int, index: int) -> int:
    """The int64 id of segment ``index`` of the clip at ``position`` in ``unit``."""
    if not (0 <= unit < MAX_UNITS and 0 <= position < MAX_CLIPS_PER_UNIT and 0 <= index < MAX_SEGMENTS_PER_CLIP):
        raise ValueError(f"segment id out of range: unit={unit} position={position} index={index}")
    return (unit << UNIT_SHIFT) | (position << POSITION_SHIFT) | index


def split_segment_id(sid: int) -> tuple[int, int, int]:
    """Inverse of :func:`segment_id`: (unit, position, index)."""
    return sid >> UNIT_SHIFT, (sid >> POSITION_SHIFT) & (MAX_CLIPS_PER_UNIT - 1), sid & (MAX_SEGMENTS_PER_CLIP - 1)


@dataclass(frozen=True)
class ClipJob:
    """One clip to decode, with its place in the plan."""

    unit: int
    position: int
    clip: ClipSpan


@dataclass
class Decoded:
    """A decoded clip: grid-aligned segments (``avlearn.media.Segment``) or the error that stopped it."""

    job: ClipJob
    segments: list = field(default_factory=list)
    error: dict | None = None
    decode_sec: float = 0.0
    has_audio: bool = True


@dataclass(frozen=True)
class DecodeConfig:
    """How every clip is cut: model frame size, audio rate, segment length and hop."""

    size_px: tuple[int, int]
    sample_rate_hz: int
    segment_sec: float = 1.0
    hop_sec: float = 1.0
    safe: bool = True  # decode each file in a sandboxed child (avlearn.media.safe_call)
    timeout_sec: float = 300.0
    memory_mb: int = 4096


def list_clips(data: str | os.PathLike) -> tuple[list[ClipSpan], list[dict]]:
    """Clip spans of a raw source (folder | manifest | AudioSet csv) and the missing-media records."""
    from avlearn.data.sources import load_source

    source = load_source(data)
    return list(source.spans), list(source.missing)


def plan_units(clips: list[ClipSpan], files_per_unit: int) -> list[list[ClipSpan]]:
    """Deterministic assignment: clips in their (sorted) order, ``files_per_unit`` per unit."""
    if files_per_unit < 1 or files_per_unit > MAX_CLIPS_PER_UNIT:
        raise ValueError(f"files_per_unit must be in 1..{MAX_CLIPS_PER_UNIT}, got {files_per_unit}")
    units = [clips[i : i + files_per_unit] for i in range(0, len(clips), files_per_unit)]
    if len(units) > MAX_UNITS:
        raise ValueError(f"{len(units)} units exceed the id space ({MAX_UNITS}); raise files_per_unit")
    return units


def iter_jobs(units: list[list[ClipSpan]], unit_ids: list[int]) -> Iterator[ClipJob]:
    for u in unit_ids:
        for pos, clip in enumerate(units[u]):
            yield ClipJob(u, pos, clip)


def decode_clip(job: ClipJob, cfg: DecodeConfig) -> Decoded:
    """Cut one clip into segments (``read_segments``; in a sandboxed child when ``cfg.safe``).

    Files without audio give image-only segments (``audio=None``, ``has_audio=False``).
    Never raises for a bad file: the error record is returned instead.
    """
    clip = job.clip
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = dict(
        size_px=tuple(cfg.size_px),
        sample_rate_hz=cfg.sample_rate_hz,
        segment_sec=cfg.segment_sec,
        hop_sec=cfg.hop_sec,
        start_sec=clip.start_sec,
        end_sec=clip.end_sec,
        require_audio=False,
        threads=1,
    )
    try:
        if cfg.safe:
            segments = safe_call(read_segments, clip.path, path=clip.path, timeout_sec=cfg.timeout_sec, memory_mb=cfg.memory_mb, **kwargs)
        else:
            segments = read_segments(clip.path, **kwargs)
    except MediaError as exc:
        return Decoded(job, error={"clip_id": clip.clip_id, **exc.to_record()}, decode_sec=time.perf_counter() - t0)
    except Exception as exc:  # a batch job never dies on one file
        rec = {"clip_id": clip.clip_id, "path": clip.path, "error": type(exc).__name__, "reason": str(exc)}
        return Decoded(job, error=rec, decode_sec=time.perf_counter() - t0)
    dt = time.perf_counter() - t0
    if not segments:
        rec = {"clip_id": clip.clip_id, "path": clip.path, "error": "TooShort", "reason": f"no complete {cfg.segment_sec:g} s segment in the clip"}
        return Decoded(job, error=rec, decode_sec=dt)
    if segments[-1].index >= MAX_SEGMENTS_PER_CLIP:
        rec = {"clip_id": clip.clip_id, "path": clip.path, "error": "MediaTooLarge", "reason": f"more than {MAX_SEGMENTS_PER_CLIP} segments"}
        return Decoded(job, error=rec, decode_sec=dt)
    has_audio = segments[0].audio is not None
    return Decoded(job, segments=segments, decode_sec=dt, has_audio=has_audio)


# --- the saved plan ------------------------------------------------------------

PLAN_JSON = "plan.json"
CLIPS_JSONL = "clips.jsonl"


def write_plan(out: Path, config: dict, units: list[list[ClipSpan]], missing: list[dict]) -> None:
    """Save the plan atomically: clips.jsonl first, plan.json (the commit point) last."""
    from indexer.writer import write_json_atomic, write_text_atomic

    lines = []
    for u, clips in enumerate(units):
        for pos, clip in enumerate(clips):
            lines.append(json.dumps({"unit": u, "position": pos, **clip.to_dict()}))
    write_text_atomic(out / CLIPS_JSONL, "\n".join(lines) + ("\n" if lines else ""))
    write_json_atomic(out / PLAN_JSON, {**config, "num_units": len(units), "num_clips": len(lines), "missing": missing})


def read_plan(out: Path) -> tuple[dict, list[list[ClipSpan]]] | None:
    """The saved plan, or None when the output dir has none yet."""
    if not (out / PLAN_JSON).is_file():
        return None
    config = json.loads((out / PLAN_JSON).read_text())
    units: list[list[ClipSpan]] = [[] for _ in range(config["num_units"])]
    with open(out / CLIPS_JSONL) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                units[d["unit"]].append(ClipSpan.from_dict(d))
    return config, units
