"""AudioSet segments CSVs (``YTID, start_seconds, end_seconds, positive_labels``; the official three
comment lines or one header row) -> clip spans over a folder of downloaded media."""

from __future__ import annotations

import bisect
import csv
import io
import os
from pathlib import Path

from avlearn.data.source_fields import VIDEO_EXTENSIONS, SourceError, opt_float
from avlearn.data.spans import ClipSpan

_AUDIOSET_HEADER = ["YTID", "start_seconds", "end_seconds", "positive_labels"]


def looks_like_audioset(text: str) -> bool:
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if s.lstrip("#").strip().startswith("YTID"):
                return True
            continue
        return s.startswith("YTID")
    return False


def _audioset_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    rows = []
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    seen_header = False
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip():
            continue
        if row[0].lstrip().startswith("#"):
            continue  # the official three comment lines (the last names the columns)
        if not seen_header and row[0].strip() == "YTID":
            if [c.strip() for c in row] != _AUDIOSET_HEADER:
                raise SourceError(f"{path}:{line}: AudioSet header must be {','.join(_AUDIOSET_HEADER)}")
            seen_header = True
            continue
        if len(row) != 4:
            raise SourceError(f"{path}:{line}: expected 4 fields (YTID, start, end, labels), got {len(row)}")
        rows.append((line, row))
    return rows


def _media_index(media_dir: Path) -> tuple[dict[str, Path], list[tuple[str, Path]]]:
    """Media under media_dir: by relative posix path, and (name, path) sorted by name for prefix lookup."""
    by_rel: dict[str, Path] = {}
    names: list[tuple[str, Path]] = []
    if media_dir.is_dir():
        for root, _dirs, files in os.walk(media_dir):
            for name in files:
                p = Path(root) / name
                by_rel[p.relative_to(media_dir).as_posix()] = p
                if p.suffix.lower() in VIDEO_EXTENSIONS:
                    names.append((name, p))
    names.sort()
    return by_rel, names


def audioset_spans(path: Path, text: str, media_dir: Path, template: str) -> tuple[list[ClipSpan], list[dict]]:
    """The clip spans of an AudioSet segments CSV (``text`` of ``path``) whose media are found under ``media_dir``
    by ``template`` (else any file named after the YouTube id), and a record for each clip without media."""
    media_dir = media_dir.resolve()
    by_rel, names = _media_index(media_dir)
    keys = [n for n, _ in names]
    template_is_cut = "{start" in template or "{end" in template
    spans: list[ClipSpan] = []
    missing: list[dict] = []
    seen: set[str] = set()
    for line, row in _audioset_rows(path, text):
        ytid = row[0].strip()
        start = opt_float(row[1], f"{path}:{line}: start_seconds")
        end = opt_float(row[2], f"{path}:{line}: end_seconds")
        if start is None or end is None or end <= start:
            raise SourceError(f"{path}:{line}: bad span {row[1]!r}..{row[2]!r}")
        labels = tuple(x.strip() for x in row[3].split(",") if x.strip())
        clip_id = f"{ytid}_{start:.3f}"
        if clip_id in seen:
            continue
        seen.add(clip_id)
        expected = template.format(ytid=ytid, start=start, end=end)
        found = by_rel.get(Path(expected).as_posix())
        cut = template_is_cut
        if found is None:  # fallback: any media file whose name starts with the YouTube id
            i = bisect.bisect_left(keys, ytid)
            if i < len(keys) and keys[i].startswith(ytid):
                found = names[i][1]
                cut = Path(keys[i]).stem != ytid  # "{ytid}.mp4" is the whole video; anything longer is the cut clip
        if found is None:
            missing.append(
                {
                    "clip_id": clip_id,
                    "ytid": ytid,
                    "path": str(media_dir / expected),
                    "error": "MissingMedia",
                    "reason": f"no media for {ytid} under {media_dir}",
                }
            )
            continue
        offset = 0.0 if cut else start
        spans.append(ClipSpan(clip_id, str(found), offset, end - start, labels, ()))
    return spans, missing
