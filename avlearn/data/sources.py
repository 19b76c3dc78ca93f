"""Data sources: a folder of media, a manifest (CSV/JSONL), or an AudioSet segments CSV -> clip spans.

``load_source(spec)`` picks the form from ``spec``:

- a directory: every file below it that may be media (recursive, sorted; hidden files, broken
  links and non-media files are listed in ``missing`` with the reason); labels from the
  nearest ``labels.csv`` (columns ``path,label[,visible]``, ``path`` relative
  to the csv's folder) found beside the media or in a folder above them.
  A prepared shard dir (has ``prepare.json``) gives the spans it covers.
- ``*.jsonl`` / a ``*.csv`` with a ``path`` column: a manifest; columns
  ``path`` (relative to the manifest's folder), optional ``clip_id``,
  ``start_sec``, ``end_sec``, ``labels`` (or ``label``; ``;``-separated or a
  JSON list) and ``visible``.
- a ``*.csv`` with ``YTID, start_seconds, end_seconds, positive_labels``
  (three ``#`` comment lines or one header row): AudioSet segments. Media are
  looked up under ``media_dir`` (default: the csv's folder) by ``template``,
  then by any file whose name starts with the YouTube id.

Missing media are listed in ``Source.missing`` (and logged), never fatal.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from avlearn.data.audioset_csv import audioset_spans, looks_like_audioset
from avlearn.data.source_fields import NON_MEDIA_EXTENSIONS, SourceError, opt_float, split_multi
from avlearn.data.spans import ClipSpan

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "{ytid}_{start:.3f}.mp4"
LABELS_CSV = "labels.csv"
# how many folders above a media folder are searched for a labels.csv
_LABELS_MAX_UP = 2


@dataclass
class Source:
    """Clip spans of one source.

    Attributes:
        spec: the spec as given.
        kind: "folder", "manifest", "audioset" or "shards".
        root: the folder relative paths are resolved against.
        spans: clips, in a stable order (sorted by clip_id for folders).
        missing: one dict per clip whose media file was not found or was passed over
            (``clip_id``, ``path``, ``error`` = "MissingMedia" | "HiddenFile" | "BrokenLink" | "NotMedia", ``reason``);
            the pipelines write these to ``errors.jsonl``, so every file of a source is accounted for.
    """

    spec: str
    kind: str
    root: Path
    spans: list[ClipSpan]
    missing: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.spans)


def is_shard_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory written by ``avlearn prepare`` (it holds prepare.json)."""
    from avlearn.data.shards import PREPARE_JSON

    p = Path(path)
    return p.is_dir() and (p / PREPARE_JSON).is_file()


def load_source(spec: str | os.PathLike, *, media_dir: str | os.PathLike | None = None, template: str = DEFAULT_TEMPLATE) -> Source:
    """Read a source spec into clip spans (see the module docstring for the forms).

    Raises:
        FileNotFoundError: ``spec`` does not exist.
        SourceError: the file is neither a manifest nor an AudioSet CSV, or a row is malformed.
    """
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"data source {os.fspath(spec)!r} does not exist")
    if path.is_dir():
        if is_shard_dir(path):
            return _load_shard_dir(path, str(spec))
        return _load_folder(path, str(spec))
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _load_manifest_jsonl(path, str(spec))
    if suffix == ".csv":
        text = path.read_text(encoding="utf-8-sig")
        if looks_like_audioset(text):
            root = (Path(media_dir) if media_dir is not None else path.parent).resolve()
            spans, missing = audioset_spans(path, text, root, template)
            _log_missing(str(spec), missing)
            return Source(str(spec), "audioset", root, spans, missing)
        return _load_manifest_csv(path, text, str(spec))
    raise SourceError(f"cannot tell what {os.fspath(spec)!r} is: give a folder, a manifest .csv/.jsonl, or an AudioSet segments .csv")


# --- folders -----------------------------------------------------------------


def _read_labels_csv(csv_path: Path) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """labels.csv -> {absolute resolved path: (labels, visible)}."""
    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            log.warning("%s has no 'path' column; ignored", csv_path)
            return out
        for row in reader:
            rel = (row.get("path") or "").strip()
            if not rel:
                continue
            labels = split_multi(row.get("labels") if row.get("labels") is not None else row.get("label"))
            visible = split_multi(row.get("visible"))
            out[os.path.normpath(csv_path.parent / rel)] = (labels, visible)
    return out


def _labels_for_folder(root: Path, media: list[Path]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Labels of media files from labels.csv files beside them, in folders between them and the root,
    or up to two folders above the root; a nearer csv overrides a farther one."""
    tops = [root, *list(root.parents)[:_LABELS_MAX_UP]]
    folders: set[Path] = set(tops)
    for p in media:
        d = p.parent
        while d != root and root in d.parents:
            folders.add(d)
            d = d.parent
    csvs = sorted((d / LABELS_CSV for d in folders if (d / LABELS_CSV).is_file()), key=lambda c: len(c.parts))
    merged: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for csv_path in csvs:
        merged.update(_read_labels_csv(csv_path))
    return merged


def _skip(root: Path, p: Path, error: str, reason: str) -> dict:
    return {"clip_id": p.relative_to(root).as_posix(), "path": str(p), "error": error, "reason": reason}


def _scan_folder(root: Path) -> tuple[list[Path], list[dict]]:
    """Every entry below ``root``: the files to decode, and a record for each one passed over.

    Passed over, with a reason: hidden files and folders (name starts with "."; one record for a
    hidden folder), broken links, and files whose extension says they are not media
    (``NON_MEDIA_EXTENSIONS``; ``labels.csv`` files are read as labels, not listed).
    """
    media: list[Path] = []
    skipped: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        for name in sorted(dirnames):
            if name.startswith("."):
                skipped.append(_skip(root, d / name, "HiddenFile", "a hidden folder (name starts with '.'): not read"))
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        for name in sorted(filenames):
            p = d / name
            if name.startswith("."):
                skipped.append(_skip(root, p, "HiddenFile", "a hidden file (name starts with '.'): not read"))
            elif not p.exists():
                skipped.append(_skip(root, p, "BrokenLink", f"a link to {os.readlink(p)!r}, which does not exist"))
            elif not p.is_file():
                skipped.append(_skip(root, p, "NotMedia", "not a regular file"))
            elif name == LABELS_CSV:
                continue
            elif p.suffix.lower() in NON_MEDIA_EXTENSIONS:
                skipped.append(_skip(root, p, "NotMedia", f"extension {p.suffix.lower()!r} is not a video format: not read"))
            else:
                media.append(p)
    return sorted(media), skipped


def _load_folder(root: Path, spec: str) -> Source:
    root = root.resolve()
    media, skipped = _scan_folder(root)
    labels = _labels_for_folder(root, media)
    spans = []
    for p in media:
        lab, vis = labels.get(os.path.normpath(p), ((), ()))
        spans.append(ClipSpan(clip_id=p.relative_to(root).as_posix(), path=str(p), labels=lab, visible=vis))
    spans.sort(key=lambda s: s.clip_id)
    if skipped:
        log.info("%s: %d file(s) passed over (hidden, broken links, not media); listed with their reasons", root, len(skipped))
    return Source(spec, "folder", root, spans, missing=skipped)


# --- manifests ---------------------------------------------------------------


def _manifest_rows_to_source(rows: list[tuple[int, dict]], manifest: Path, spec: str) -> Source:
    root = manifest.parent.resolve()
    spans: list[ClipSpan] = []
    missing: list[dict] = []
    counts: dict[str, int] = {}
    for line, row in rows:
        rel = str(row.get("path") or "").strip()
        if not rel:
            raise SourceError(f"{manifest}:{line}: empty 'path'")
        counts[rel] = counts.get(rel, 0) + 1
    for line, row in rows:
        rel = str(row["path"]).strip()
        full = os.path.normpath(root / rel)
        start = opt_float(row.get("start_sec"), f"{manifest}:{line}: start_sec") or 0.0
        end = opt_float(row.get("end_sec"), f"{manifest}:{line}: end_sec")
        if end is not None and end <= start:
            raise SourceError(f"{manifest}:{line}: end_sec {end} is not after start_sec {start}")
        labels = split_multi(row.get("labels") if row.get("labels") is not None else row.get("label"))
        clip_id = str(row.get("clip_id") or "").strip()
        if not clip_id:
            norm = posixpath.normpath(Path(rel).as_posix())
            clip_id = norm if counts[rel] == 1 else f"{norm}@{start:.3f}"
        span = ClipSpan(clip_id, full, start, None if end is None else end - start, labels, split_multi(row.get("visible")))
        if not os.path.isfile(full):
            missing.append({"clip_id": clip_id, "path": full, "error": "MissingMedia", "reason": f"no such file (manifest line {line})"})
            continue
        spans.append(span)
    ids = [s.clip_id for s in spans] + [m["clip_id"] for m in missing]
    if len(set(ids)) != len(ids):
        raise SourceError(f"{manifest}: clip ids are not unique; give a clip_id column")
    _log_missing(spec, missing)
    return Source(spec, "manifest", root, spans, missing)


def _load_manifest_csv(path: Path, text: str, spec: str) -> Source:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
        raise SourceError(
            f"{path}: a manifest CSV needs a 'path' column (got {reader.fieldnames}); an AudioSet CSV needs YTID,start_seconds,end_seconds,positive_labels"
        )
    reader.fieldnames = [f.strip() for f in reader.fieldnames]
    return _manifest_rows_to_source([(i + 2, row) for i, row in enumerate(reader)], path, spec)


def _load_manifest_jsonl(path: Path, spec: str) -> Source:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{i}: not JSON: {exc}") from exc
            if not isinstance(row, dict) or "path" not in row:
                raise SourceError(f"{path}:{i}: each line must be an object with a 'path'")
            rows.append((i, row))
    return _manifest_rows_to_source(rows, path, spec)


# --- shard dirs --------------------------------------------------------------


def _load_shard_dir(path: Path, spec: str) -> Source:
    from avlearn.data.shards import read_done_records

    spans = []
    for rec in read_done_records(path):
        for clip in rec["clips"]:
            spans.append(ClipSpan.from_dict(clip))
    spans.sort(key=lambda s: s.clip_id)
    return Source(spec, "shards", path.resolve(), spans)


def _log_missing(spec: str, missing: list[dict]) -> None:
    if missing:
        log.warning("%s: %d clip(s) have no media file (first: %s)", spec, len(missing), missing[0]["path"])
        for m in missing[:20]:
            log.debug("missing media: %s", m)
