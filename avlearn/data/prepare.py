"""``avlearn prepare``: decode a source once into WebDataset tar shards, resumably.

Work assignment is deterministic: the clip list sorted by clip_id is cut into
groups of ``clips_per_shard``; group g becomes ``shard-{g:06d}.tar``. A group
is decoded clip by clip (``read_segments`` inside ``safe_call``: a child
process with a timeout and a memory cap; JPEG/FLAC encoding happens there too),
written to a temp name, published with ``os.replace``, its bad clips appended
to ``errors.jsonl`` (deduplicated by clip_id), and last its done record
``shard-{g:06d}.done.json`` is written (atomically) listing the clips it
covers. A group is finished iff its done record exists, so a restart (after a
crash or SIGKILL) redoes exactly the unfinished groups, and redone groups give
the same bytes. ``prepare.json`` holds the parameters and the clip list's hash;
a restart with other parameters or another clip list is refused.

``kind="frames"`` stores frame sequences instead of segments (one sample per clip: its frames at
``fps`` on the video's grid, short side ``short_px``; see ``avlearn.data.frame_shards``), for the
temporal and colorization tasks; groups, done records, resume and errors.jsonl are the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avlearn.atomic import atomic_write_json, atomic_write_text, remove_temps
from avlearn.data.frame_shards import FrameShardParams, decode_frame_clip
from avlearn.data.shards import (
    ERRORS_JSONL,
    FORMAT_VERSION,
    PREPARE_JSON,
    done_name,
    encode_audio,
    encode_jpeg,
    iter_done_records,
    segment_key,
    shard_name,
    write_shard_atomic,
)
from avlearn.data.sources import DEFAULT_TEMPLATE, Source, is_shard_dir, load_source
from avlearn.data.spans import ClipSpan

log = logging.getLogger(__name__)

# assumed segments per clip when no span states its duration (AudioSet-like 10 s clips)
_DEFAULT_SEGMENTS_PER_CLIP = 10
_MAX_REASON_CHARS = 600


class PrepareConfigMismatch(ValueError):
    """The output dir was prepared with other parameters or another clip list."""


@dataclass(frozen=True)
class PrepareParams:
    """Everything that decides the bytes of the shards (stored in prepare.json)."""

    segment_sec: float = 1.0
    hop_sec: float = 1.0
    frame_size_px: int = 256
    sample_rate_hz: int = 16000
    frames_per_segment: int = 1
    shard_size: int = 1000
    clips_per_shard: int = 100
    audio_format: str = "flac"
    allow_no_audio: bool = False
    jpeg_quality: int = 95

    def validate(self) -> None:
        if self.segment_sec <= 0 or self.hop_sec <= 0:
            raise ValueError("segment_sec and hop_sec must be > 0")
        if self.frame_size_px < 0 or self.sample_rate_hz <= 0 or self.frames_per_segment < 1:
            raise ValueError("frame_size_px must be >= 0, sample_rate_hz > 0, frames_per_segment >= 1")
        if self.clips_per_shard < 1 or self.shard_size < 1:
            raise ValueError("clips_per_shard and shard_size must be >= 1")
        if self.audio_format not in ("flac", "f16"):
            raise ValueError(f"audio_format must be 'flac' or 'f16', not {self.audio_format!r}")


def decode_clip(span: dict, params: dict) -> list[dict[str, Any]]:
    """Decode and encode one clip into WebDataset samples (runs inside safe_call's child).

    Returns:
        samples ``{"__key__", "jpg", ["f1.jpg", ...], "flac" | "npy", "json"}`` of bytes.

    Raises:
        MediaError subclasses (NoAudioStream unless allow_no_audio; TooShort when no complete segment).
    """
    from avlearn.media import TooShort, probe, read_segments, short_side_size

    p = PrepareParams(**params)
    clip = ClipSpan.from_dict(span)
    info = probe(clip.path)
    size = short_side_size(info.width_px, info.height_px, p.frame_size_px)
    segments = read_segments(
        clip.path,
        size_px=size,
        sample_rate_hz=p.sample_rate_hz,
        segment_sec=p.segment_sec,
        hop_sec=p.hop_sec,
        start_sec=clip.start_sec,
        end_sec=clip.end_sec,
        require_audio=not p.allow_no_audio,
        frames_per_segment=p.frames_per_segment,
    )
    if not segments:
        raise TooShort(clip.path, f"no complete {p.segment_sec:g} s segment (media lasts {info.duration_sec:.3f} s)")
    samples = []
    for seg in segments:
        key = segment_key(clip.clip_id, seg.index)
        sample: dict[str, Any] = {"__key__": key, "jpg": encode_jpeg(seg.frame, p.jpeg_quality)}
        if seg.frames is not None:
            for j in range(1, seg.frames.shape[0]):
                sample[f"f{j}.jpg"] = encode_jpeg(seg.frames[j], p.jpeg_quality)
        if seg.audio is not None:
            ext, data = encode_audio(seg.audio, p.sample_rate_hz, p.audio_format)
            sample[ext] = data
        meta = {
            "clip_id": clip.clip_id,
            "path": clip.path,
            "index": seg.index,
            "last_index": segments[-1].index,
            "start_sec": seg.start_sec,
            "labels": list(clip.labels),
            "visible": list(clip.visible),
            "sample_rate_hz": p.sample_rate_hz,
            "segment_sec": p.segment_sec,
            "frames_per_segment": p.frames_per_segment,
            "has_audio": seg.audio is not None,
        }
        sample["json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
        samples.append(sample)
    return samples


def _frames_summary(summary: dict, frames: int, new_sequences: int) -> dict:
    """A frame-shard summary: sequences and frames in place of the segment counts."""
    out = {k: v for k, v in summary.items() if k not in ("segments", "new_segments", "segments_per_sec")}
    out["sequences"] = summary["segments"]
    out["new_sequences"] = new_sequences
    out["frames"] = frames
    out["sequences_per_sec"] = round(new_sequences / summary["seconds"], 2) if summary["seconds"] > 0 else 0.0
    return out


def _clips_hash(spans: list[ClipSpan]) -> str:
    h = hashlib.sha256()
    for s in spans:
        h.update(json.dumps([s.clip_id, s.path, s.start_sec, s.duration_sec], sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _resolve_clips_per_shard(spans: list[ClipSpan], shard_size: int, hop_sec: float) -> int:
    durations = [s.duration_sec for s in spans if s.duration_sec is not None]
    per_clip = max(1, int(statistics.median(durations) / hop_sec)) if durations else _DEFAULT_SEGMENTS_PER_CLIP
    return max(1, shard_size // per_clip)


class _ErrorLog:
    """errors.jsonl: one record per clip_id, deduplicated across restarts, crash-tolerant."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.records: dict[str, dict] = {}
        if path.exists():
            with open(path) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash mid-write
                    if isinstance(rec, dict) and "clip_id" in rec:
                        self.records.setdefault(rec["clip_id"], rec)
        atomic_write_text(path, "".join(json.dumps(rec) + "\n" for rec in self.records.values()))

    def add(self, records: list[dict]) -> None:
        with self.lock:
            new = [r for r in records if r["clip_id"] not in self.records]
            if not new:
                return
            with open(self.path, "a") as f:
                for rec in new:
                    self.records[rec["clip_id"]] = rec
                    f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())


def _error_record(span: ClipSpan, exc: Exception) -> dict:
    from avlearn.media import MediaError

    if isinstance(exc, MediaError):
        rec = exc.to_record()
        rec["path"] = span.path
    else:
        rec = {"path": span.path, "error": type(exc).__name__, "reason": str(exc)}
    rec["reason"] = rec["reason"].strip()[:_MAX_REASON_CHARS]
    return {"clip_id": span.clip_id, **rec}


def _check_or_write_config(out: Path, config: dict) -> None:
    path = out / PREPARE_JSON
    if path.exists():
        with open(path) as f:
            old = json.load(f)
        diffs = [k for k in ("format_version", "source", "params", "num_clips", "clips_sha256") if old.get(k) != config.get(k)]
        if diffs:
            detail = "; ".join(f"{k}: was {old.get(k)!r}, now {config.get(k)!r}" for k in diffs if k != "params")
            if "params" in diffs:
                pk = sorted(set(old.get("params", {})) | set(config["params"]))
                detail = "; ".join(
                    [
                        f"{k}: was {old['params'].get(k)!r}, now {config['params'].get(k)!r}"
                        for k in pk
                        if old.get("params", {}).get(k) != config["params"].get(k)
                    ]
                    + ([detail] if detail else [])
                )
            raise PrepareConfigMismatch(f"{out} was prepared with other settings ({detail}); use a new --out dir or the original settings")
        return
    atomic_write_json(path, config)


def prepare(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = 2,
    segment_sec: float = 1.0,
    hop_sec: float = 1.0,
    frame_size_px: int = 256,
    sample_rate_hz: int = 16000,
    frames_per_segment: int = 1,
    shard_size: int = 1000,
    clips_per_shard: int | None = None,
    audio_format: str = "flac",
    allow_no_audio: bool = False,
    timeout_sec: float = 120.0,
    memory_mb: int = 4096,
    media_dir: str | os.PathLike | None = None,
    template: str = DEFAULT_TEMPLATE,
    progress: bool = True,
    kind: str = "segments",
    fps: float = 8.0,
    short_px: int = 128,
    max_frames: int | None = None,
) -> dict:
    """Decode ``data`` (folder | manifest | AudioSet csv) once into resumable WebDataset shards in ``out``.

    Args:
        frame_size_px: short side of stored frames (aspect kept); 0 keeps the native size.
        shard_size: target segments per shard; sets clips_per_shard when that is None
            (from the clips' median duration, or 10 segments per clip when unknown).
        clips_per_shard: clips per group (= per shard file); fixed for the life of ``out``.
        audio_format: "flac" (16-bit) or "f16" (float16 .npy).
        allow_no_audio: keep files without audio (segments without an audio member);
            otherwise they are errors (NoAudioStream).
        kind: "segments" (audio-visual segments) or "frames" (one frame sequence per clip,
            ``avlearn.data.frame_shards``; uses ``fps``, ``short_px``, ``max_frames`` and
            ``clips_per_shard`` (default 50), not the segment settings).

    Returns:
        summary: clips, clips_ok, segments, new_segments, errors, missing, shards,
        shards_skipped, seconds, segments_per_sec (new segments / seconds), accounted;
        kind "frames": sequences, new_sequences, frames, sequences_per_sec instead of the segment counts.

    Raises:
        PrepareConfigMismatch: ``out`` holds a run with other parameters or clips.
        FileNotFoundError, SourceError: ``data`` cannot be read.
    """
    from avlearn.media import safe_call

    t0 = time.monotonic()
    if is_shard_dir(data):
        raise ValueError(f"{os.fspath(data)} is already a prepared shard dir")
    source: Source = load_source(data, media_dir=media_dir, template=template)
    spans = sorted(source.spans, key=lambda s: s.clip_id)
    params: PrepareParams | FrameShardParams
    if kind == "frames":
        params = FrameShardParams(fps=fps, short_px=short_px, max_frames=max_frames, clips_per_shard=clips_per_shard or 50)
        decode_fn: Any = decode_frame_clip
    elif kind == "segments":
        if clips_per_shard is None:
            clips_per_shard = _resolve_clips_per_shard(spans, shard_size, hop_sec)
        params = PrepareParams(
            segment_sec, hop_sec, frame_size_px, sample_rate_hz, frames_per_segment, shard_size, clips_per_shard, audio_format, allow_no_audio
        )
        decode_fn = decode_clip
    else:
        raise ValueError(f"kind must be 'segments' or 'frames', not {kind!r}")
    params.validate()
    clips_per_shard = params.clips_per_shard
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "source": os.path.abspath(os.fspath(data)),
        "source_kind": source.kind,
        "params": asdict(params),
        "num_clips": len(spans),
        "clips_sha256": _clips_hash(spans),
    }
    _check_or_write_config(out, config)
    remove_temps(out, "shard-*")
    errors = _ErrorLog(out / ERRORS_JSONL)
    errors.add([{k: m[k] for k in ("clip_id", "path", "error", "reason")} for m in source.missing])

    groups = [spans[i : i + clips_per_shard] for i in range(0, len(spans), clips_per_shard)]
    todo = [g for g in range(len(groups)) if not (out / done_name(g)).exists()]
    done_clips = sum(len(groups[g]) for g in range(len(groups)) if g not in set(todo))
    pdict = asdict(params)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(spans), initial=done_clips, unit="clip", desc="prepare", dynamic_ncols=True)

    def decode_one(span: ClipSpan) -> tuple[list[dict], dict | None]:
        try:
            got = safe_call(decode_fn, span.to_dict(), pdict, path=span.path, timeout_sec=timeout_sec, memory_mb=memory_mb)
            result: tuple[list[dict], dict | None] = (got, None)
        except Exception as exc:  # a bad file never stops the job
            rec = _error_record(span, exc)
            log.info("skipping %s: %s: %s", span.path, rec["error"], rec["reason"].splitlines()[0] if rec["reason"] else "")
            result = ([], rec)
        if bar is not None:
            bar.update(1)
        return result

    def publish(g: int, results: list[tuple[list[dict], dict | None]]) -> int:
        samples: list[dict] = []
        clips: list[dict] = []
        bad: list[dict] = []
        for span, (got, err) in zip(groups[g], results):
            samples.extend(got)
            extra = got[0].get("_clip", {}) if got else {}  # frames: the sequence's length and step
            clips.append({**span.to_dict(), "segments": len(got), **extra, **({"error": err["error"]} if err else {})})
            if err is not None:
                bad.append(err)
        write_shard_atomic(out / shard_name(g), samples)
        errors.add(bad)
        atomic_write_json(out / done_name(g), {"group": g, "shard": shard_name(g), "segments": len(samples), "clips": clips, "errors": bad})
        return len(samples)

    # Clips run on the pool; groups are published in order by this thread. A window of
    # groups in flight keeps every worker busy across group boundaries while bounding
    # the decoded-but-unwritten data to about two groups.
    new_segments = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque[tuple[int, list]] = deque()
            queue = iter(todo)
            in_flight = 0
            exhausted = False
            while True:
                while not exhausted and (len(pending) < 2 or in_flight < 2 * max(1, workers)):
                    g = next(queue, None)
                    if g is None:
                        exhausted = True
                        break
                    pending.append((g, [pool.submit(decode_one, span) for span in groups[g]]))
                    in_flight += len(groups[g])
                if not pending:
                    break
                g, futures = pending.popleft()
                try:
                    results = [f.result() for f in futures]
                except BaseException:  # Ctrl-C or a bug: drop queued clips, keep what is published
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                new_segments += publish(g, results)
                in_flight -= len(futures)
    finally:
        if bar is not None:
            bar.close()

    total_segments = clips_ok = n_shards = n_frames = 0
    for rec in iter_done_records(out):  # streamed: the summary holds one record at a time
        n_shards += 1
        total_segments += rec["segments"]
        clips_ok += sum(1 for c in rec["clips"] if c["segments"] > 0)
        n_frames += sum(c.get("frames", 0) for c in rec["clips"])
    seconds = time.monotonic() - t0
    n_clips = len(spans) + len(source.missing)
    summary = {
        "out": str(out),
        "clips": n_clips,
        "clips_ok": clips_ok,
        "segments": total_segments,
        "new_segments": new_segments,
        "errors": len(errors.records),
        "missing": len(source.missing),
        "shards": n_shards,
        "shards_skipped": len(groups) - len(todo),
        "seconds": round(seconds, 3),
        "segments_per_sec": round(new_segments / seconds, 2) if seconds > 0 else 0.0,
        "accounted": clips_ok + len(errors.records) == n_clips,
    }
    if kind == "frames":
        summary = _frames_summary(summary, n_frames, new_segments)
    log.info("prepare: %s", json.dumps(summary))
    return summary
