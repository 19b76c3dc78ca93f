"""Typed media errors. Every decode failure in avlearn surfaces as one of these."""

from __future__ import annotations


class MediaError(Exception):
    """Base class: a media file could not be read as asked.

    Attributes:
        path: the file concerned ("" when decoding bytes).
        reason: a short human-readable explanation.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{type(self).__name__}: {reason} [{self.path}]" if self.path else f"{type(self).__name__}: {reason}")

    def __reduce__(self):  # keep the two-argument constructor picklable across processes
        return (type(self), (self.path, self.reason))

    def to_record(self) -> dict[str, str]:
        """A JSON-ready record for error logs: path, error type, reason."""
        return {"path": self.path, "error": type(self).__name__, "reason": self.reason}


class MissingMedia(MediaError):
    """The file does not exist or cannot be opened."""


class CorruptMedia(MediaError):
    """The container or a stream cannot be parsed or decoded (truncated, garbled, not media)."""


class NoVideoStream(MediaError):
    """The file has no video stream but frames were asked for."""


class NoAudioStream(MediaError):
    """The file has no (decodable) audio stream but audio was asked for."""


class TooShort(MediaError):
    """The requested span extends past the end of the media and padding was not allowed."""


class DecodeTimeout(MediaError):
    """Decoding took longer than the safe-mode time limit (a hang or a pathological file)."""


class MediaTooLarge(MediaError):
    """The media exceeds a configured limit (pixels, duration, memory cap)."""


__all__ = [
    "MediaError",
    "MissingMedia",
    "CorruptMedia",
    "NoVideoStream",
    "NoAudioStream",
    "TooShort",
    "DecodeTimeout",
    "MediaTooLarge",
]
