"""avlearn.media: the only code that imports PyAV.

Decoding (probe, frames on the frame grid, audio, one-pass segments), writing,
typed errors and the safe (sandboxed) mode. Audio features live in
``avlearn.media.features`` (it imports torch; this package does not).
"""

from avlearn.media._base import MediaInfo, MediaSource, probe
from avlearn.media.audio import read_audio
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
from avlearn.media.segments import Segment, read_segments
from avlearn.media.video import Frames, read_frames, read_image, resize_frames, short_side_size

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
    "resize_frames",
    "short_side_size",
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
