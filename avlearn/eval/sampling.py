"""Sample before decoding: the evaluations' seeded draw of clips (and segments) from a source's listing.

The protocol (docs/metrics.md, "Sampling"):

1. List the clips of the source without decoding anything: a folder, a manifest or AudioSet csv
   (:mod:`avlearn.data.sources`), or a shard dir of ``avlearn prepare`` (its done records, which
   also give each clip's stored segment count).
2. Order the clips by :func:`clip_priority`, a seeded hash of the clip's media file (real path) and
   start time. The order depends on neither the source's form nor which other clips the listing
   holds: the same seed draws the same clips from a folder, from a csv naming the same files, and
   from a shard dir prepared from either.
3. Walk that order one clip at a time: decode the clip, keep ``segments_per_clip`` of its segments
   (a seeded draw of positions from the same hash; 0 = all) until ``max_segments`` are kept (the
   last clip gives what is left). A clip that gives no segment (cannot be decoded, too short) is
   counted and passed over. From a shard dir the clips needed are known from the stored counts,
   and only their samples are decoded (the tars that hold them are read; other samples' JPEG
   and audio are skipped undecoded).
4. The kept records are returned sorted by (clip_id, index).

Memory: the kept records, one clip being decoded, and the listing (a few KB per clip), never the
split's decoded media.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.segments import SegmentRecord, iter_segment_records, shard_units
from avlearn.data.sources import Source, is_shard_dir, load_source
from avlearn.data.spans import ClipSpan

log = logging.getLogger(__name__)

PROTOCOL = (
    "clips ordered by a seeded hash of (media file, start); walked in that order, each decoded alone, "
    "segments_per_clip of its segments kept (seeded positions; 0 = all) until max_segments; the same draw from a folder, a csv or a shard dir"
)


def _digest(span: ClipSpan, seed: int) -> bytes:
    key = f"{int(seed)}\0{os.path.realpath(span.path)}\0{span.start_sec:.3f}"
    return hashlib.sha256(key.encode("utf-8")).digest()


def clip_priority(span: ClipSpan, seed: int) -> tuple[bytes, str]:
    """Sort key of a clip in the seeded draw (smallest first): a hash of (seed, real path, start), then the clip id."""
    return (_digest(span, seed), span.clip_id)


def sample_order(spans: Sequence[ClipSpan], seed: int) -> list[ClipSpan]:
    """The clips in the order the seeded draw visits them."""
    return sorted(spans, key=lambda s: clip_priority(s, seed))


def pick_positions(span: ClipSpan, n: int, take: int, seed: int) -> list[int]:
    """Sorted positions (0 .. n-1) of the ``take`` segments kept of a clip with ``n``: a seeded draw from the clip's hash."""
    rng = np.random.default_rng(int.from_bytes(_digest(span, seed)[:8], "little"))
    return sorted(int(i) for i in rng.permutation(n)[:take])


@dataclass
class SegmentSample:
    """The sampled segments of a source and how they were drawn.

    Attributes:
        records: kept segments, sorted by (clip_id, index).
        spans: the whole listing (every clip of the source; for matching boxes by file).
        report: protocol and counters: clips listed, clips decoded (raw: tried; shards: read), clips without
            segments (undecodable, too short, or stored with none), clips and segments kept.
    """

    records: list[SegmentRecord]
    spans: list[ClipSpan]
    report: dict[str, Any] = field(default_factory=dict)


def _take(n: int, segments_per_clip: int, left: float) -> int:
    cap = n if segments_per_clip <= 0 else min(n, segments_per_clip)
    return int(min(cap, left))


def _stored_counts(root: Path) -> tuple[list[ClipSpan], dict[str, int], dict[str, str]]:
    """A shard dir's listing: spans, stored segments per clip id, and the tar holding each clip."""
    from avlearn.data.shards import read_done_records

    spans, counts, where = [], {}, {}
    for rec in read_done_records(root):
        for clip in rec["clips"]:
            span = ClipSpan.from_dict(clip)
            spans.append(span)
            counts[span.clip_id] = int(clip.get("segments") or 0)
            where[span.clip_id] = rec["shard"]
    return spans, counts, where


def sample_segments(
    src: str | os.PathLike,
    *,
    max_segments: int,
    segments_per_clip: int = 0,
    seed: int = 0,
    size_px: int | tuple[int, int] | None = None,
    sample_rate_hz: int = 16000,
    segment_sec: float = 1.0,
    hop_sec: float = 1.0,
) -> SegmentSample:
    """The seeded sample of a source's segments, decoding only the clips drawn (see the module docstring).

    Args:
        src: a folder, manifest, AudioSet csv or prepared shard dir.
        max_segments: segments kept at most (<= 0: every segment of every clip).
        segments_per_clip: segments kept per clip at most (<= 0: all of a drawn clip).
        size_px: frames' (height, width), or an int for square frames.

    Raises:
        FileNotFoundError, SourceError: bad source. ValueError: segment_sec / hop_sec differ from a shard dir's.
    """
    budget = float(max_segments) if max_segments > 0 else float("inf")
    if is_shard_dir(src):
        spans, records, counters = _sample_shards(Path(src), budget, segments_per_clip, seed, size_px, sample_rate_hz, segment_sec, hop_sec)
        kind = "shards"
    else:
        source = load_source(src)
        spans, kind = source.spans, source.kind
        records, counters = _sample_raw(source, budget, segments_per_clip, seed, size_px, sample_rate_hz, segment_sec, hop_sec)
    records.sort(key=lambda r: (r.clip_id, r.index))
    report = {
        "protocol": PROTOCOL,
        "source_kind": kind,
        "seed": int(seed),
        "max_segments": int(max_segments),
        "segments_per_clip": int(segments_per_clip),
        "clips_listed": len(spans),
        **counters,
        "clips_kept": len({r.clip_id for r in records}),
        "segments": len(records),
    }
    return SegmentSample(records, list(spans), report)


def _sample_raw(
    source: Source, budget: float, per_clip: int, seed: int, size_px: Any, sample_rate_hz: int, segment_sec: float, hop_sec: float
) -> tuple[list[SegmentRecord], dict[str, int]]:
    kept: list[SegmentRecord] = []
    decoded = empty = 0
    for span in sample_order(source.spans, seed):
        if len(kept) >= budget:
            break
        one = Source(source.spec, source.kind, source.root, [span])
        segs = list(iter_segment_records(one, size_px=size_px, sample_rate_hz=sample_rate_hz, segment_sec=segment_sec, hop_sec=hop_sec))
        decoded += 1
        if not segs:
            empty += 1
            continue
        kept.extend(segs[i] for i in pick_positions(span, len(segs), _take(len(segs), per_clip, budget - len(kept)), seed))
    return kept, {"clips_missing": len(source.missing), "clips_decoded": decoded, "clips_without_segments": empty}


def _sample_shards(
    root: Path, budget: float, per_clip: int, seed: int, size_px: Any, sample_rate_hz: int, segment_sec: float, hop_sec: float
) -> tuple[list[ClipSpan], list[SegmentRecord], dict[str, int]]:
    from avlearn.data.shards import read_prepare_config

    params = read_prepare_config(root)["params"]
    if abs(float(params["segment_sec"]) - segment_sec) > 1e-9 or abs(float(params["hop_sec"]) - hop_sec) > 1e-9:
        raise ValueError(
            f"{root} holds {params['segment_sec']} s segments every {params['hop_sec']} s; this evaluation needs {segment_sec} s every {hop_sec} s: "
            f"run `avlearn prepare --segment-sec {segment_sec:g} --hop-sec {hop_sec:g}` into a new --out, or give the raw source"
        )
    spans, counts, where = _stored_counts(root)
    wanted: dict[str, tuple[ClipSpan, int]] = {}
    planned = empty = 0
    for span in sample_order(spans, seed):
        if planned >= budget:
            break
        n = counts[span.clip_id]
        if n <= 0:
            empty += 1
            continue
        take = _take(n, per_clip, budget - planned)
        wanted[span.clip_id] = (span, take)
        planned += take
    size = (size_px, size_px) if isinstance(size_px, int) else size_px
    _, read = shard_units(root, size, sample_rate_hz, segment_sec, hop_sec, 1, True)
    kept: list[SegmentRecord] = []
    for shard in sorted({where[c] for c in wanted}):  # a clip lies in one tar: trim each tar's clips as soon as it is read
        here = {c: v for c, v in wanted.items() if where[c] == shard}
        by_clip: dict[str, list[SegmentRecord]] = {c: [] for c in here}
        for rec in read(root / shard, clips=set(here)):
            by_clip[rec.clip_id].append(rec)
        for clip_id, (span, take) in here.items():
            segs = sorted(by_clip.pop(clip_id), key=lambda r: r.index)
            if not segs:
                empty += 1
                continue
            kept.extend(segs[i] for i in pick_positions(span, len(segs), min(take, len(segs)), seed))
    return spans, kept, {"clips_decoded": len(wanted), "clips_without_segments": empty}


def iter_sampled_spans(spans: Sequence[ClipSpan], max_clips: int, seed: int) -> Iterator[ClipSpan]:
    """The first ``max_clips`` clips of the seeded draw (all when ``max_clips`` <= 0), in the listing's order."""
    if max_clips <= 0 or len(spans) <= max_clips:
        yield from spans
        return
    rank = {id(s): i for i, s in enumerate(sample_order(spans, seed))}
    yield from (s for s in spans if rank[id(s)] < max_clips)
