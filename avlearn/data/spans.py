"""Clip spans: a value naming which part of which media file is one clip."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipSpan:
    """One clip of a source: a file, or a time span inside it.

    Attributes:
        clip_id: unique within its source (folder: relative path; AudioSet: ``{ytid}_{start:.3f}``).
        path: absolute path of the media file.
        start_sec: where the clip starts inside the file.
        duration_sec: how long it lasts; None means to the end of the file.
        labels: sounding categories (AudioSet: class ids such as ``/m/09x0r``).
        visible: every category on screen.
    """

    clip_id: str
    path: str
    start_sec: float = 0.0
    duration_sec: float | None = None
    labels: tuple[str, ...] = ()
    visible: tuple[str, ...] = ()

    @property
    def end_sec(self) -> float | None:
        """``start_sec + duration_sec``, or None when the clip runs to the end of the file."""
        return None if self.duration_sec is None else self.start_sec + self.duration_sec

    def to_dict(self) -> dict:
        """JSON-ready form (tuples become lists)."""
        return {
            "clip_id": self.clip_id,
            "path": self.path,
            "start_sec": self.start_sec,
            "duration_sec": self.duration_sec,
            "labels": list(self.labels),
            "visible": list(self.visible),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClipSpan:
        return cls(
            clip_id=str(d["clip_id"]),
            path=str(d["path"]),
            start_sec=float(d.get("start_sec") or 0.0),
            duration_sec=None if d.get("duration_sec") is None else float(d["duration_sec"]),
            labels=tuple(d.get("labels") or ()),
            visible=tuple(d.get("visible") or ()),
        )
