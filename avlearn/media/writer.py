"""Writing real media files with PyAV (H.264 + AAC MP4 by default): for the synthetic world and tests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction

import av
import numpy as np


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: int,
    *,
    audio: np.ndarray | None = None,
    sample_rate_hz: int = 48000,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    crf: int = 23,
    preset: str = "veryfast",
    audio_bitrate: int = 96_000,
    gop: int | None = None,
    frame_times_sec: Sequence[float] | None = None,
) -> None:
    """Encode frames (and optional audio) into a container chosen by the file extension.

    Args:
        frames: iterable of (H, W, 3) uint8 RGB; H and W even for yuv420p.
        fps: frames per second (integer); the nominal rate when ``frame_times_sec`` is given.
        audio: (n,) mono or (C, n) float32 in [-1, 1], or None for a video-only file.
        sample_rate_hz: audio rate.
        video_codec: "libx264" (H.264), "mpeg4", "libvpx", "libvpx-vp9", ...
        audio_codec: "aac", "libmp3lame", "libopus", "flac", ...
        gop: keyframe interval in frames (None: the encoder's default).
        frame_times_sec: presentation time of each frame (increasing, millisecond
            precision) for a variable-frame-rate file; None: frame i at i / fps.
    """
    with av.open(os.fspath(path), mode="w") as out:
        # VFR: a millisecond clock (the encoder's time base follows the stream rate)
        vs = out.add_stream(video_codec, rate=fps if frame_times_sec is None else 1000)
        vs.pix_fmt = "yuv420p"
        vs.time_base = Fraction(1, fps) if frame_times_sec is None else Fraction(1, 1000)
        options = {"crf": str(crf), "preset": preset} if video_codec == "libx264" else {}
        if gop is not None:
            options["g"] = str(gop)
        if options:
            vs.options = options
        a_stream = None
        if audio is not None:
            a_stream = out.add_stream(audio_codec, rate=sample_rate_hz)
            a_stream.layout = _layout(np.asarray(audio))
            if audio_codec not in ("flac", "pcm_s16le"):
                a_stream.bit_rate = audio_bitrate
        first = True
        for i, img in enumerate(frames):
            img = np.ascontiguousarray(img, dtype=np.uint8)
            if first:
                vs.height, vs.width = img.shape[:2]
                first = False
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i if frame_times_sec is None else int(round(frame_times_sec[i] * 1000))
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if a_stream is not None and audio is not None:
            _encode_audio(out, a_stream, audio, sample_rate_hz)


def _layout(audio: np.ndarray) -> str:
    """The channel layout of (n,) or (C, n) audio: mono, stereo or 5.1."""
    channels = 1 if audio.ndim == 1 else audio.shape[0]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels)
    if layout is None:
        raise ValueError(f"unsupported channel count {channels} (1, 2 or 6)")
    return layout


def _encode_audio(out, stream, audio: np.ndarray, sample_rate_hz: int) -> None:
    """Encode (n,) or (C, n) float audio in [-1, 1] into ``stream`` of ``out`` in codec frames, then flush.
    A pcm_s16le stream gets interleaved 16-bit samples, any other codec planar floats."""
    data = np.asarray(audio, dtype=np.float32)
    layout = _layout(data)
    if data.ndim == 1:
        data = data[None, :]
    data = np.clip(data, -1.0, 1.0)
    s16 = stream.codec_context.name == "pcm_s16le"
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, data.shape[1], frame_size):
        chunk = data[:, start : start + frame_size]
        if s16:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray((chunk.T * 32767).astype(np.int16).reshape(1, -1)), format="s16", layout=layout)
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
        frame.sample_rate = sample_rate_hz
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, *, codec: str | None = None) -> None:
    """Write an audio-only file; codec defaults from the extension.

    .wav → pcm_s16le, .flac, .mp3 → libmp3lame, .ogg → libvorbis (libopus when this FFmpeg
    build lacks libvorbis; Opus needs 48/24/16/12/8 kHz), .m4a → aac. ``audio`` is (n,) or (C, n) float32.
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libvorbis", ".m4a": "aac"}.get(ext, "pcm_s16le")
    if codec == "libvorbis" and "libvorbis" not in av.codecs_available:
        codec = "libopus"
    with av.open(os.fspath(path), mode="w") as out:
        stream = out.add_stream(codec, rate=sample_rate_hz)
        stream.layout = _layout(np.asarray(audio))
        _encode_audio(out, stream, audio, sample_rate_hz)
