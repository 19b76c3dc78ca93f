"""What every source form shares: its error type, the file extensions a folder source knows, and the
parsing of multi-label and optional number fields (``avlearn.data.sources`` and its AudioSet reader)."""

from __future__ import annotations

import json

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".mkv",
        ".webm",
        ".avi",
        ".mov",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".ts",
        ".m2ts",
        ".mts",
        ".flv",
        ".f4v",
        ".3gp",
        ".3g2",
        ".ogv",
        ".wmv",
        ".asf",
        ".vob",
        ".divx",
    }
)
# Files a folder source does not try to decode: each is listed with the reason (errors.jsonl), never dropped silently.
# A file with any other extension (or none) is tried: FFmpeg probes by content, and a failure is recorded per file.
NON_MEDIA_EXTENSIONS = frozenset(
    {".txt", ".md", ".csv", ".json", ".jsonl", ".yaml", ".yml", ".xml", ".html", ".pdf", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp",
     ".tif", ".tiff", ".srt", ".vtt", ".ass", ".nfo", ".log", ".py", ".sh", ".zip", ".tar", ".gz", ".db", ".sqlite", ".npz", ".npy"}
)  # fmt: skip


class SourceError(ValueError):
    """The source spec cannot be read (unknown form, bad header, unreadable row)."""


def split_multi(value: object) -> tuple[str, ...]:
    """A multi-label field -> tuple: a list, a JSON list string, or a ``;``-separated string."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = str(value).strip()
    if not text:
        return ()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"bad JSON label list {text!r}: {exc}") from exc
        return split_multi(items)
    return tuple(part.strip() for part in text.split(";") if part.strip())


def opt_float(value: object, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{what} must be a number, not {value!r}") from exc
