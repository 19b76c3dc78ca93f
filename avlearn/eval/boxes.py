"""Sounding-object boxes for the localization figures: reading VGG-SS / Flickr-SoundNet style JSON,
matching each box to a video of the data (a path or a bare video id), and decoding the frame on
screen at the box's time with the audio from that frame on (as the index decodes segments).

Used by ``avlearn eval avc`` (:mod:`avlearn.eval.avc`); every box that matches no video or whose
frame cannot be decoded is counted and named in the report, never dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.eval import metrics as M

log = logging.getLogger(__name__)

EXAMPLES = 5  # how many unmatched / undecodable boxes a report names


class EvalDataError(ValueError):
    """The evaluation data cannot be used (no segments, fewer than two videos, unreadable boxes)."""


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class BoxEntry:
    """One annotated frame of a boxes file.

    Attributes:
        file: as given: a media path (relative to ``base``) or a bare video id (a file name without folder or extension).
        time_sec: the annotated frame's time on the media's time axis (need not fall on the segment grid).
        boxes: normalised [x0, y0, x1, y1] boxes (VGG-SS: their union is the ground truth).
        annotators: Flickr-SoundNet style: each annotator's boxes (the consensus map is the ground truth), or None.
        base: the boxes file's folder.
    """

    file: str
    time_sec: float
    boxes: tuple[tuple[float, float, float, float], ...]
    annotators: tuple[tuple[tuple[float, float, float, float], ...], ...] | None = None
    label: str = ""
    base: str = "."

    def gt_map(self) -> np.ndarray:
        """(224, 224) ground truth as the LVS reference builds it (binary union, or the Flickr consensus map)."""
        if self.annotators is not None:
            return M.consensus_gt_map(self.annotators)
        return M.gt_map(self.boxes)


def _box_list(value: Any) -> tuple[tuple[float, float, float, float], ...]:
    boxes = tuple(tuple(float(v) for v in b) for b in value)
    if any(len(b) != 4 or not all(np.isfinite(b)) for b in boxes):
        raise ValueError("a bbox needs 4 finite numbers [x0, y0, x1, y1]")
    return boxes  # type: ignore[return-value]


def load_boxes(path: str | os.PathLike) -> list[BoxEntry]:
    """Read a VGG-SS-format boxes JSON: ``[{"file", "bbox": [[x0, y0, x1, y1], ...], "time_sec", "class"}]``.

    ``time_sec`` defaults to 0; ``"annotators": [[[x0, y0, x1, y1], ...], ...]`` (one box list per
    annotator) may replace ``bbox`` for a consensus ground truth.

    Raises:
        EvalDataError: unreadable JSON or a malformed entry.
    """
    p = Path(path)
    try:
        entries = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalDataError(f"cannot read boxes {p}: {exc}") from exc
    if not isinstance(entries, list):
        raise EvalDataError(f"{p}: expected a JSON list of {{file, bbox, time_sec}} entries")
    out = []
    for e in entries:
        try:
            annotators = tuple(_box_list(a) for a in e["annotators"]) if "annotators" in e else None
            boxes = _box_list(e["bbox"]) if "bbox" in e or annotators is None else tuple(b for a in annotators for b in a)
            t = float(e.get("time_sec", 0.0))
            if not np.isfinite(t) or t < 0:
                raise ValueError(f"time_sec must be a finite time >= 0, got {t}")
            out.append(BoxEntry(str(e["file"]), t, boxes, annotators, str(e.get("class", "")), str(p.parent.resolve())))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalDataError(f"{p}: bad box entry {e!r:.200}: {exc}") from exc
    return out


def match_boxes(entries: list[BoxEntry], media_paths: list[str]) -> tuple[list[tuple[BoxEntry, str]], dict[str, Any]]:
    """Pair each box entry with a media file of the data: by path (relative to the boxes file), else by
    bare id (a media file whose name, with or without extension, equals ``file``).

    Returns:
        ([(entry, media path)], report) where the report counts ``boxes_total``, ``boxes_video_not_found``
        (no such video among the data's files) and ``boxes_video_ambiguous`` (a bare id naming several files),
        with up to ``EXAMPLES`` of each.
    """
    by_path = {str(Path(m).resolve()): m for m in media_paths}
    by_name: dict[str, set[str]] = defaultdict(set)
    for m in media_paths:
        by_name[Path(m).name].add(m)
        by_name[Path(m).stem].add(m)
    matched, missing, ambiguous = [], [], []
    for e in entries:
        f = Path(e.file)
        hit = by_path.get(str((f if f.is_absolute() else Path(e.base) / f).resolve()))
        if hit is None and len(f.parts) == 1:
            names = by_name.get(f.name, set())
            if len(names) > 1:
                ambiguous.append(e.file)
                continue
            hit = next(iter(names), None)
        if hit is None:
            missing.append(e.file)
        else:
            matched.append((e, hit))
    report = {
        "boxes_total": len(entries),
        "boxes_video_not_found": len(missing),
        "boxes_video_ambiguous": len(ambiguous),
        "video_not_found_examples": sorted(set(missing))[:EXAMPLES],
        "video_ambiguous_examples": sorted(set(ambiguous))[:EXAMPLES],
    }
    return matched, report


@dataclass
class BoxSample:
    """An annotated frame, decoded: ``frame`` (H, W, 3) uint8 on screen at the entry's time (its own time
    ``frame_sec``), ``audio`` (n,) float32 from ``frame_sec`` on, ``gt`` the (224, 224) ground-truth map."""

    path: str
    time_sec: float
    frame_sec: float
    frame: np.ndarray
    audio: np.ndarray
    gt: np.ndarray
    audio_padded: bool = False


def decode_box_frame(path: str, time_sec: float, *, sample_rate_hz: int, segment_sec: float) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """The segment an index would hold if its grid started at ``time_sec``: ``read_segments`` from there
    (the frame on screen at ``time_sec``, the audio from that frame's own time). Near the end of the media,
    where the audio window runs out, the frame is read alone and its audio zero-padded.

    Returns:
        (frame (H, W, 3) uint8 at native size, audio (n,) float32, the frame's time in s, whether audio was padded).

    Raises:
        MediaError: the file cannot be decoded or ``time_sec`` is past its last frame.
    """
    from avlearn.media import read_audio, read_frames, read_segments

    segs = read_segments(
        path, size_px=None, sample_rate_hz=sample_rate_hz, segment_sec=segment_sec, hop_sec=segment_sec, start_sec=time_sec, end_sec=time_sec + segment_sec
    )
    if segs and segs[0].audio is not None:
        return segs[0].frame, segs[0].audio, float(segs[0].start_sec), False
    frames = read_frames(path, [time_sec])
    t = float(frames.times_sec[0])
    return frames.images[0], read_audio(path, t, segment_sec, sample_rate_hz, pad=True), t, True


def decode_boxes(matched: list[tuple[BoxEntry, str]], *, sample_rate_hz: int, segment_sec: float) -> tuple[list[BoxSample], dict[str, Any]]:
    """Decode every matched box's frame and audio; returns (samples, report of ``boxes_undecodable`` and ``boxes_audio_padded``)."""
    from avlearn.media import MediaError

    samples, failed = [], []
    for e, path in matched:
        try:
            frame, audio, frame_sec, padded = decode_box_frame(path, e.time_sec, sample_rate_hz=sample_rate_hz, segment_sec=segment_sec)
        except MediaError as exc:
            failed.append(f"{e.file} @ {e.time_sec:g} s: {exc}")
            continue
        samples.append(BoxSample(path, e.time_sec, frame_sec, frame, audio, e.gt_map(), padded))
    for f in failed:
        log.warning("box not scored: %s", f)
    report = {
        "boxes_undecodable": len(failed),
        "undecodable_examples": failed[:EXAMPLES],
        "boxes_audio_padded": sum(s.audio_padded for s in samples),
    }
    return samples, report


def find_boxes(data: str | os.PathLike) -> Path | None:
    """A ``boxes.json`` in the data folder or up to two folders above (a world's, for its splits)."""
    p = Path(data).resolve()
    start = p if p.is_dir() else p.parent
    for d in [start, *list(start.parents)[:2]]:
        if (d / "boxes.json").is_file():
            return d / "boxes.json"
    return None
