"""Writer stage: one embedding shard per work unit, published atomically with a done marker.

Layout of an embeddings dir ``EMB``::

    plan.json, clips.jsonl          the fixed unit assignment (see avlearn.pipeline.reader)
    shards/shard-000012.npz         ids (S,) int64 ascending; image (S, D) and audio (S, D)
                                    float16|float32 L2-normalised (audio rows of image-only
                                    segments are zero); has_audio (S,) bool; start_sec (S,)
                                    float64; clip_id, source, labels (S,) str (labels ';'-joined)
    shards/shard-000012.done.json   written after the .npz: unit, counts, errors, no_audio, timings
    errors.jsonl                    every bad file (clip_id, path, error, reason), rebuilt from
                                    the done markers after each shard (so never duplicated)
    no_audio.jsonl                  files embedded image-only
    gaps.jsonl                      files with grid positions skipped at frame gaps (never repeated segments)
    summary.json                    the last run's summary

A shard counts as finished only when its done marker exists; both files are written
to a temp name, fsynced and renamed, so a kill at any moment leaves either a
finished shard or none (an orphan .npz without a marker is simply rewritten).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlearn.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, remove_temps

SHARDS = "shards"
ERRORS_JSONL = "errors.jsonl"
NO_AUDIO_JSONL = "no_audio.jsonl"
GAPS_JSONL = "gaps.jsonl"  # clips whose frame gaps skipped grid positions (no repeated segments)
SUMMARY_JSON = "summary.json"


def shard_path(out: Path, unit: int) -> Path:
    return out / SHARDS / f"shard-{unit:06d}.npz"


def done_path(out: Path, unit: int) -> Path:
    return out / SHARDS / f"shard-{unit:06d}.done.json"


@dataclass
class ShardRows:
    """The embedded segments of one unit, in id order."""

    ids: np.ndarray  # (S,) int64
    image: np.ndarray  # (S, D)
    audio: np.ndarray  # (S, D); zero rows where has_audio is False
    has_audio: np.ndarray  # (S,) bool
    start_sec: np.ndarray  # (S,) float64
    clip_id: np.ndarray  # (S,) str
    source: np.ndarray  # (S,) str
    labels: np.ndarray  # (S,) str, ';'-joined

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def write_shard(out: Path, unit: int, rows: ShardRows, marker: dict) -> None:
    """Publish unit ``unit``: the .npz first, then its done marker (the commit point)."""
    import io

    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(
        buf,
        ids=rows.ids.astype(np.int64),
        image=rows.image,
        audio=rows.audio,
        has_audio=rows.has_audio.astype(bool),
        start_sec=rows.start_sec.astype(np.float64),
        clip_id=rows.clip_id.astype(str),
        source=rows.source.astype(str),
        labels=rows.labels.astype(str),
    )
    atomic_write_bytes(shard_path(out, unit), buf.getvalue())
    atomic_write_json(done_path(out, unit), {"unit": unit, "segments": len(rows), **marker}, sort_keys=True)


def done_units(out: Path) -> set[int]:
    """Units whose shard is finished (done marker present and its .npz in place)."""
    found = set()
    d = out / SHARDS
    if not d.is_dir():
        return found
    for p in d.glob("shard-*.done.json"):
        unit = int(p.name.split("-")[1].split(".")[0])
        if shard_path(out, unit).is_file():
            found.add(unit)
    return found


def read_marker(out: Path, unit: int) -> dict:
    return json.loads(done_path(out, unit).read_text())


def clean_temp(out: Path) -> None:
    """Remove temp files left by a killed run (never a finished shard)."""
    for d in (out, out / SHARDS):
        remove_temps(d)


def rebuild_logs(out: Path) -> tuple[int, int]:
    """Rewrite errors.jsonl and no_audio.jsonl from the plan's missing list and all done markers.

    Returns (errors, no_audio) counts.
    """
    errors: list[dict] = []
    plan = out / "plan.json"
    if plan.is_file():
        errors.extend(json.loads(plan.read_text()).get("missing", []))
    no_audio: list[dict] = []
    gaps: list[dict] = []
    for unit in sorted(done_units(out)):
        m = read_marker(out, unit)
        errors.extend(m.get("errors", []))
        no_audio.extend(m.get("no_audio", []))
        gaps.extend(m.get("gaps", []))
    atomic_write_text(out / ERRORS_JSONL, "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))
    atomic_write_text(out / NO_AUDIO_JSONL, "".join(json.dumps(e, sort_keys=True) + "\n" for e in no_audio))
    atomic_write_text(out / GAPS_JSONL, "".join(json.dumps(e, sort_keys=True) + "\n" for e in gaps))
    return len(errors), len(no_audio)


def read_shard(out: Path, unit: int) -> ShardRows:
    with np.load(shard_path(out, unit), allow_pickle=False) as z:
        return ShardRows(**{k: z[k] for k in ShardRows.__dataclass_fields__})


def iter_shards(out: str | os.PathLike) -> Iterator[tuple[int, ShardRows]]:
    """Finished shards of an embeddings dir, in unit order."""
    out = Path(out)
    for unit in sorted(done_units(out)):
        yield unit, read_shard(out, unit)


def read_embed_config(out: str | os.PathLike) -> dict:
    """plan.json of an embeddings dir (checkpoint hash, dim, segment_sec, ...).

    Raises:
        FileNotFoundError: not an embeddings dir.
    """
    p = Path(out) / "plan.json"
    if not p.is_file():
        raise FileNotFoundError(f"{out} is not an embeddings dir (no plan.json; run `avlearn embed` first)")
    return json.loads(p.read_text())
