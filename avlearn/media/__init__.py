"""avlearn.media: the only code that imports PyAV.

Decoding (probe, frames on the frame grid, audio, one-pass segments), writing,
typed errors and the safe (sandboxed) mode. Audio features live in
``avlearn.media.features`` (it imports torch; this package does not).
"""

from avlearn.media.decode import Frames, MediaInfo, MediaSource, Segment, probe, read_audio, read_frames, read_image, read_segments
from avlearn.media.errors import (
    CorruptMedia,
    DecodeTimeout,
    MediaError,
    MediaTooLarge,
    MissingMedia,
    NoAudioStream,
    NoVideoStream,
    TooShort,
)
from avlearn.media.safe import safe_call

__all__ = [
    "Frames",
    "MediaInfo",
    "MediaSource",
    "Segment",
    "probe",
    "read_audio",
    "read_frames",
    "read_image",
    "read_segments",
    "safe_call",
    "MediaError",
    "CorruptMedia",
    "DecodeTimeout",
    "MediaTooLarge",
    "MissingMedia",
    "NoAudioStream",
    "NoVideoStream",
    "TooShort",
]
