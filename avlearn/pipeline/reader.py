"""Reader stage: list the archive, split it into fixed work units, decode one clip (or one input shard).

The plan (which clip belongs to which unit, at which position) is computed once from
the sorted clip list and saved in ``EMB/plan.json`` + ``EMB/clips.jsonl``; a restart
reuses it, so unit ``u`` always means the same clips and a finished shard is never
redone or duplicated.

Two kinds of input:

- a raw source (folder | manifest | AudioSet csv): units are fixed groups of
  ``files_per_unit`` clips; each clip is decoded on its own (:func:`decode_clip`).
- a prepared shard dir (``avlearn prepare``): unit ``u`` is the ``u``-th published
  input tar that holds at least one segment, its clips in the tar's order (the clips
  prepare recorded as errors are absent); a unit is read in one pass over its tar
  (:func:`decode_shard_unit`, via ``avlearn.data.segments``).

Segment ids are ``(unit << 40) | (position << 20) | segment_index``: stable, unique
across the archive, ascending in shard order (up to 2^23 units, 2^20 clips per unit,
2^20 segments per clip).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avlearn.data.spans import ClipSpan
from avlearn.media import MediaError, read_segments, safe_call

log = logging.getLogger(__name__)

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
    gaps: list = field(default_factory=list)  # grid positions skipped at frame gaps (SegmentList.gaps)


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
    shard_dir: str | None = None  # a prepared shard dir: read its tars instead of decoding media


@dataclass(frozen=True)
class UnitJob:
    """One input tar of a prepared shard dir = one work unit; ``clips`` in the tar's order."""

    unit: int
    shard: str  # tar file name inside DecodeConfig.shard_dir
    clips: tuple[ClipSpan, ...]


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


def iter_unit_jobs(units: list[list[ClipSpan]], unit_ids: list[int], unit_shards: list[str]) -> Iterator[UnitJob]:
    for u in unit_ids:
        yield UnitJob(u, unit_shards[u], tuple(units[u]))


# --- prepared shard dirs -------------------------------------------------------


def check_shard_dir(shard_dir: str | os.PathLike, segment_sec: float, hop_sec: float) -> dict:
    """The shard dir's prepare.json, after checking it was cut with ``segment_sec`` / ``hop_sec``.

    Raises:
        ValueError: the shards were prepared with another segment length or hop.
    """
    from avlearn.data.shards import read_prepare_config

    config = read_prepare_config(shard_dir)
    params = config["params"]
    for name, want in (("segment_sec", segment_sec), ("hop_sec", hop_sec)):
        have = float(params[name])
        if abs(have - float(want)) > 1e-9:
            raise ValueError(
                f"{shard_dir} was prepared with {name}={have:g}, but {name}={float(want):g} was asked; "
                f"embed with --{name.replace('_', '-')} {have:g} or re-run `avlearn prepare` with {name}={float(want):g}"
            )
    return config


def list_shard_units(shard_dir: str | os.PathLike) -> tuple[list[list[ClipSpan]], list[str], list[dict]]:
    """Units of a finished prepared shard dir: (clips per unit, tar name per unit, error records).

    Unit ``u`` is the ``u``-th tar (by group) with at least one segment; its clips are
    those prepare decoded, in the tar's order. The errors are prepare's ``errors.jsonl``
    (bad and missing media), one per clip id.

    Raises:
        ValueError: prepare has not published every shard yet.
    """
    from avlearn.data.shards import ERRORS_JSONL, read_done_records, read_prepare_config

    root = Path(shard_dir)
    config = read_prepare_config(root)
    records = read_done_records(root)
    expected = math.ceil(int(config["num_clips"]) / int(config["params"]["clips_per_shard"]))
    if len(records) < expected:
        raise ValueError(f"{root}: prepare has published {len(records)} of {expected} shards; finish `avlearn prepare` (re-run it) before embedding")
    units: list[list[ClipSpan]] = []
    shards: list[str] = []
    for rec in records:
        clips = [ClipSpan.from_dict(c) for c in rec["clips"] if c.get("segments", 0) > 0 and not c.get("error")]
        if len(clips) > MAX_CLIPS_PER_UNIT:
            raise ValueError(f"{root / rec['shard']}: {len(clips)} clips exceed the {MAX_CLIPS_PER_UNIT} clips a unit may hold")
        if clips:
            units.append(clips)
            shards.append(rec["shard"])
    if len(units) > MAX_UNITS:
        raise ValueError(f"{len(units)} shards exceed the id space ({MAX_UNITS} units)")
    errors: dict[str, dict] = {}
    if (root / ERRORS_JSONL).is_file():
        for line in (root / ERRORS_JSONL).read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash of prepare
            if isinstance(rec, dict) and "clip_id" in rec:
                errors.setdefault(str(rec["clip_id"]), rec)
    return units, shards, list(errors.values())


@functools.lru_cache(maxsize=4)
def _shard_record_reader(shard_dir: str, prepared_ns: int, size_px: tuple[int, int], sample_rate_hz: int, segment_sec: float, hop_sec: float):
    """``avlearn.data.segments``' reader of one tar, made once per process and prepare.json
    version (``prepared_ns``: its mtime), since making it lists every done record."""
    from avlearn.data.segments import shard_units

    _, read = shard_units(Path(shard_dir), size_px, sample_rate_hz, segment_sec, hop_sec, 1, False)
    return read


def decode_shard_unit(job: UnitJob, cfg: DecodeConfig) -> list[Decoded]:
    """Read one input tar into one :class:`Decoded` per clip of ``job`` (in position order).

    Frames are decoded from JPEG and resized to ``cfg.size_px``; audio is resampled to
    ``cfg.sample_rate_hz`` when the shards' rate differs (``avlearn.data.segments``).
    Segments keep the index and start time prepare stored. Never raises for bad data: a
    tar that cannot be read (missing, truncated, corrupt member) gives every clip of the
    unit an error record.
    """
    assert cfg.shard_dir is not None
    clips = job.clips
    position = {c.clip_id: i for i, c in enumerate(clips)}
    segments: list[list] = [[] for _ in clips]
    seconds = [0.0] * len(clips)
    failure: dict | None = None
    t0 = time.perf_counter()
    try:
        from avlearn.data.shards import PREPARE_JSON

        prepared_ns = os.stat(Path(cfg.shard_dir) / PREPARE_JSON).st_mtime_ns
        read = _shard_record_reader(cfg.shard_dir, prepared_ns, tuple(cfg.size_px), int(cfg.sample_rate_hz), float(cfg.segment_sec), float(cfg.hop_sec))
        for rec in read(Path(cfg.shard_dir) / job.shard):
            t1 = time.perf_counter()
            pos = position.get(rec.clip_id)
            if pos is None:
                raise ValueError(f"segment of clip {rec.clip_id!r}, which the done record of {job.shard} does not list")
            segments[pos].append(rec)
            seconds[pos] += t1 - t0
            t0 = t1
    except Exception as exc:  # a corrupt or missing tar: record it, the job goes on
        failure = {"error": type(exc).__name__, "reason": f"input shard {job.shard}: {exc}"}
        log.warning("unit %d (%s): %s", job.unit, job.shard, failure["reason"])
    out = []
    for pos, clip in enumerate(clips):
        segs = sorted(segments[pos], key=lambda s: s.index)
        dec = Decoded(ClipJob(job.unit, pos, clip), decode_sec=seconds[pos])
        if failure is not None:
            dec.error = {"clip_id": clip.clip_id, "path": clip.path, **failure}
        elif not segs:
            dec.error = {
                "clip_id": clip.clip_id,
                "path": clip.path,
                "error": "MissingSegments",
                "reason": f"input shard {job.shard} holds no segment of this clip",
            }
        elif segs[-1].index >= MAX_SEGMENTS_PER_CLIP:
            dec.error = {"clip_id": clip.clip_id, "path": clip.path, "error": "MediaTooLarge", "reason": f"more than {MAX_SEGMENTS_PER_CLIP} segments"}
        else:
            dec.segments = segs
            dec.has_audio = segs[0].audio is not None
        out.append(dec)
    return out


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
    return Decoded(job, segments=segments, decode_sec=dt, has_audio=has_audio, gaps=list(getattr(segments, "gaps", [])))


# --- the saved plan ------------------------------------------------------------

PLAN_JSON = "plan.json"
CLIPS_JSONL = "clips.jsonl"


def write_plan(out: Path, config: dict, units: list[list[ClipSpan]], missing: list[dict]) -> None:
    """Save the plan atomically: clips.jsonl first, plan.json (the commit point) last."""
    from avlearn.atomic import atomic_write_json, atomic_write_text

    lines = []
    for u, clips in enumerate(units):
        for pos, clip in enumerate(clips):
            lines.append(json.dumps({"unit": u, "position": pos, **clip.to_dict()}))
    atomic_write_text(out / CLIPS_JSONL, "\n".join(lines) + ("\n" if lines else ""))
    atomic_write_json(out / PLAN_JSON, {**config, "num_units": len(units), "num_clips": len(lines), "missing": missing}, sort_keys=True)


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
