"""avlearn.media decoding on tiny generated media: the frame-grid rule, audio accuracy, segments, images."""

from __future__ import annotations

import io
import struct
import zlib

import av
import numpy as np
import pytest
from _media_gen import clicks, expected_index, gray_frames, index_of, sine, tone_peak
from PIL import Image

from avlearn.media import (
    CorruptMedia,
    MediaTooLarge,
    MissingMedia,
    NoAudioStream,
    NoVideoStream,
    TooShort,
    _base,
    probe,
    read_audio,
    read_frames,
    read_image,
    read_segments,
)
from avlearn.media.writer import write_audio, write_video
from avlearn.testing import require_tool


def _has_encoder(name: str) -> bool:
    return name in av.codecs_available


# ---------------------------------------------------------------- probe


def test_probe_tone_video(tone_video):
    info = probe(tone_video)
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(25.0)
    assert (info.width_px, info.height_px) == (96, 64)
    assert info.num_frames == 75
    assert info.duration_sec == pytest.approx(3.0, abs=0.1)
    assert (info.sample_rate_hz, info.channels) == (16000, 1)
    assert info.path == str(tone_video)


def test_probe_video_only_and_audio_only(video_only, wav_mono):
    v = probe(video_only)
    assert v.has_video and not v.has_audio and v.sample_rate_hz is None
    a = probe(wav_mono)
    assert a.has_audio and not a.has_video and a.fps is None and a.width_px is None
    assert a.duration_sec == pytest.approx(12.0, abs=0.01)
    assert (a.sample_rate_hz, a.channels) == (48000, 1)


def test_probe_bytes_and_file_object_match_path(tone_video):
    data = tone_video.read_bytes()
    from_bytes = probe(data)
    with open(tone_video, "rb") as fh:
        from_file = probe(fh)
    assert from_bytes.duration_sec == pytest.approx(probe(tone_video).duration_sec)
    assert from_file.num_frames == from_bytes.num_frames == 75


def test_probe_missing_file(tmp_path):
    with pytest.raises(MissingMedia):
        probe(tmp_path / "nope.mp4")


def test_probe_ignores_cover_art(tmp_path):
    """An MP3 with an attached picture is audio-only for us."""
    ffmpeg = require_tool("ffmpeg")
    import subprocess

    write_audio(tmp_path / "a.mp3", sine(440, 1.0, 44100), 44100)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "cover.png")
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-i",
            str(tmp_path / "a.mp3"),
            "-i",
            str(tmp_path / "cover.png"),
            "-map",
            "0",
            "-map",
            "1",
            "-c",
            "copy",
            "-disposition:v",
            "attached_pic",
            str(tmp_path / "b.mp3"),
        ],
        check=True,
    )
    assert not probe(tmp_path / "b.mp3").has_video
    with pytest.raises(NoVideoStream):
        read_frames(tmp_path / "b.mp3", [0.0])


# ---------------------------------------------------------------- read_frames: the frame grid


@pytest.mark.parametrize("fps,seconds", [(24, 1.37), (25, 1.0), (30, 0.9)])
def test_read_frames_follows_the_grid(tmp_path, fps, seconds):
    n = int(round(seconds * fps))
    path = tmp_path / f"g{fps}.mp4"
    write_video(path, gray_frames(n), fps)
    on_grid = [i / fps for i in (0, 1, n // 2, n - 1)]
    off_grid = [0.3 / fps, 2.7 / fps, (n // 2 + 1) / fps - 1e-4, (n - 1) / fps + 0.5 / fps]
    times = on_grid + off_grid
    got = read_frames(path, times)
    assert got.images.shape == (len(times), 32, 48, 3)
    for t, img, snapped in zip(times, got.images, got.times_sec):
        i = expected_index(t, fps, n)
        assert index_of(img) == i, f"t={t}"
        assert snapped == pytest.approx(i / fps, abs=1e-6)


def test_read_frames_before_first_and_past_the_end(tone_video):
    got = read_frames(tone_video, [-1.0, 0.0])
    assert list(got.times_sec) == [0.0, 0.0]
    assert index_of(got.images[0]) == 0
    last = read_frames(tone_video, [2.999])  # the last frame (2.96 s) is on screen until 3.0 s
    assert last.times_sec[0] == pytest.approx(2.96) and index_of(last.images[0]) == 74
    with pytest.raises(TooShort, match="last frame at 2.960"):
        read_frames(tone_video, [1.0, 3.2])


def test_read_frames_unsorted_and_repeated(tone_video):
    times = [2.5, 0.1, 1.0, 0.1, 2.5, 0.0]
    got = read_frames(tone_video, times)
    ref = read_frames(tone_video, sorted(set(times)))
    lookup = {t: (img, s) for t, img, s in zip(sorted(set(times)), ref.images, ref.times_sec)}
    for t, img, s in zip(times, got.images, got.times_sec):
        np.testing.assert_array_equal(img, lookup[t][0])
        assert s == lookup[t][1]
    assert [index_of(img) for img in got.images] == [62, 2, 25, 2, 62, 0]


def test_read_frames_seek_path_equals_straight_decode(long_video, monkeypatch):
    times = [11.85, 0.25, 5.55, 3.0, 9.2, 5.55, 11.99]
    monkeypatch.setattr(_base, "SEEK_THRESHOLD_SEC", 0.5)  # seek before nearly every time
    sought = read_frames(long_video, times)
    monkeypatch.setattr(_base, "SEEK_THRESHOLD_SEC", 1e9)  # never seek
    straight = read_frames(long_video, times)
    np.testing.assert_array_equal(sought.images, straight.images)
    np.testing.assert_array_equal(sought.times_sec, straight.times_sec)
    expected = [expected_index(t, 10, 120) for t in times]
    np.testing.assert_allclose(straight.times_sec, np.array(expected) / 10, atol=1e-6)
    for img, i in zip(straight.images, expected):
        assert abs(float(img.mean()) - (3 * i) % 256) <= 2


def test_read_frames_size_bytes_and_file_object(tone_video):
    small = read_frames(tone_video, [0.5, 1.5], size_px=(16, 24))
    native = read_frames(tone_video, [0.5])
    assert small.images.shape == (2, 16, 24, 3) and small.images.dtype == np.uint8
    assert abs(float(small.images[0].mean()) - float(native.images.mean())) <= 2  # a flat frame stays flat
    assert read_frames(tone_video.read_bytes(), [0.5]).images.tobytes() == native.images.tobytes()
    with open(tone_video, "rb") as fh:
        assert read_frames(fh, [0.5]).images.tobytes() == native.images.tobytes()


def test_read_frames_arguments(tone_video, wav_mono):
    assert read_frames(tone_video, [], size_px=(8, 8)).images.shape == (0, 8, 8, 3)
    with pytest.raises(ValueError):
        read_frames(tone_video, [float("nan")])
    with pytest.raises(ValueError):
        read_frames(tone_video, [0.0], size_px=(0, 8))
    with pytest.raises(NoVideoStream):
        read_frames(wav_mono, [0.0])


def test_read_frames_variable_frame_rate(tmp_path):
    times = [0.0, 0.1, 0.15, 0.4, 0.45, 0.9, 1.0, 1.3, 1.31, 1.9]
    path = tmp_path / "vfr.mp4"
    write_video(path, gray_frames(len(times)), 10, frame_times_sec=times)
    asks = [0.05, 0.12, 0.16, 0.399, 0.41, 0.95, 1.305, 1.31, 1.95]
    got = read_frames(path, asks)
    want = [max(i for i, ft in enumerate(times) if ft <= t + 1e-6) for t in asks]
    assert [index_of(img) for img in got.images] == want
    np.testing.assert_allclose(got.times_sec, [times[i] for i in want], atol=1e-6)


def _reference_grid(path) -> list[tuple[float, np.ndarray]]:
    """Every frame's (time, rgb) by a plain PyAV decode: an independent check of the grid rule."""
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


@pytest.mark.parametrize(
    "name,codec",
    [("mpeg4.avi", "mpeg4"), ("vp8.webm", "libvpx"), ("vp9.webm", "libvpx-vp9")],
)
def test_read_frames_other_codecs(tmp_path, name, codec):
    if not _has_encoder(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = tmp_path / name
    audio_codec = "libopus" if name.endswith("webm") else "libmp3lame"
    write_video(path, gray_frames(25), 25, video_codec=codec, audio=sine(440, 1.0, 48000), audio_codec=audio_codec)
    ref = _reference_grid(path)
    times = [0.0, 0.3, 0.5, 0.77, 0.99]
    got = read_frames(path, times)
    for t, img, snapped in zip(times, got.images, got.times_sec):
        ref_t, ref_img = [r for r in ref if r[0] <= t + 1e-6][-1]
        assert snapped == pytest.approx(ref_t, abs=1e-6)
        np.testing.assert_array_equal(img, ref_img)
    peak_hz, _ = tone_peak(read_audio(path, 0.2, 0.5), 16000)
    assert peak_hz == pytest.approx(440, abs=4)


# ---------------------------------------------------------------- read_audio


@pytest.mark.parametrize(
    "ext,channels,rate",
    [("wav", 1, 44100), ("wav", 2, 48000), ("flac", 2, 44100), ("mp3", 1, 44100), ("mp3", 2, 48000), ("ogg", 1, 48000), ("ogg", 2, 48000)],
)
def test_read_audio_keeps_tone_after_downmix_and_resampling(tmp_path, ext, channels, rate):
    wave = sine(440.0, 2.0, rate, 0.5)
    path = tmp_path / f"t.{ext}"
    write_audio(path, wave if channels == 1 else np.stack([wave, wave]), rate)
    info = probe(path)
    assert (info.channels, info.sample_rate_hz) == (channels, rate)
    out = read_audio(path, 0.5, 1.0, sample_rate_hz=16000)
    assert out.shape == (16000,) and out.dtype == np.float32
    freq, amp = tone_peak(out, 16000)
    assert freq == pytest.approx(440.0, abs=2.0)
    assert amp == pytest.approx(0.5, abs=0.04)  # down-mixing keeps the amplitude of a tone on every channel


@pytest.mark.parametrize("codec,ext", [("aac", "mp4"), ("flac", "mkv")])
def test_read_audio_six_channel_downmix(tmp_path, codec, ext):
    wave = sine(440.0, 2.0, 48000, 0.5)
    path = tmp_path / f"six.{ext}"
    write_video(path, gray_frames(50), 25, audio=np.stack([wave] * 6), audio_codec=codec, audio_bitrate=384_000)
    assert probe(path).channels == 6
    freq, amp = tone_peak(read_audio(path, 0.5, 1.0), 16000)
    assert freq == pytest.approx(440.0, abs=2.0) and amp == pytest.approx(0.5, abs=0.04)


def test_read_audio_stays_in_range(tmp_path):
    loud = np.sign(sine(1000.0, 1.0, 44100)).astype(np.float32)  # full-scale square: resampling overshoots
    write_audio(tmp_path / "sq.wav", np.stack([loud, loud]), 44100)
    out = read_audio(tmp_path / "sq.wav", sample_rate_hz=16000)
    assert out.max() <= 1.0 and out.min() >= -1.0 and out.max() > 0.9


@pytest.mark.parametrize("ext,rate", [("wav", 44100), ("flac", 48000), ("mp3", 44100)])
def test_read_audio_click_lands_on_time(tmp_path, ext, rate):
    path = tmp_path / f"click.{ext}"
    write_audio(path, clicks([1.2345], 3.0, rate), rate)
    out = read_audio(path, 1.0, 0.5, sample_rate_hz=16000)
    assert abs(int(np.argmax(np.abs(out))) - 0.2345 * 16000) <= 16  # ±1 ms


def test_read_audio_click_in_video_lands_on_time(click_video):
    out = read_audio(click_video, 1.0, 1.0, sample_rate_hz=16000)
    assert abs(int(np.argmax(np.abs(out))) - 0.5 * 16000) <= 16


def test_read_audio_pad_or_too_short(tone_video):
    padded = read_audio(tone_video, 2.5, 1.0)
    assert padded.shape == (16000,)
    assert np.abs(padded[:7000]).max() > 0.1 and np.abs(padded[9000:]).max() == 0.0
    with pytest.raises(TooShort):
        read_audio(tone_video, 2.5, 1.0, pad=False)
    lead = read_audio(tone_video, -0.5, 1.0)
    assert np.abs(lead[:7900]).max() == 0.0 and np.abs(lead[8200:]).max() > 0.1
    with pytest.raises(TooShort):
        read_audio(tone_video, -0.5, 1.0, pad=False)
    whole = read_audio(tone_video)
    assert whole.shape[0] == pytest.approx(3.0 * 16000, abs=1100)


def test_read_audio_seek_path_equals_straight_decode(wav_mono, long_video, monkeypatch):
    monkeypatch.setattr(_base, "SEEK_THRESHOLD_SEC", 0.5)
    sought_wav = read_audio(wav_mono, 8.0, 1.0, sample_rate_hz=48000)
    sought_mp4 = read_audio(long_video, 8.0, 1.0)
    monkeypatch.setattr(_base, "SEEK_THRESHOLD_SEC", 1e9)
    np.testing.assert_array_equal(sought_wav, read_audio(wav_mono, 8.0, 1.0, sample_rate_hz=48000))
    straight_mp4 = read_audio(long_video, 8.0, 1.0)
    assert np.abs(sought_mp4 - straight_mp4).max() < 0.03  # AAC: the resampler's sub-sample phase may differ
    assert tone_peak(straight_mp4, 16000)[0] == pytest.approx(440, abs=2)


def test_read_audio_gap_keeps_later_audio_in_place(tmp_path):
    """Audio after a hole in the timestamps stays at its own time (no shift onto the hole)."""
    rate = 16000
    path = tmp_path / "gap.mkv"
    with av.open(str(path), "w") as out:  # 0-1 s 440 Hz, nothing 1-2 s, 2-3 s 880 Hz
        stream = out.add_stream("flac", rate=rate)
        stream.layout = "mono"
        for start, freq in ((0.0, 440.0), (2.0, 880.0)):
            wave = sine(freq, 1.0, rate, 0.5)
            for k in range(0, rate, 1024):
                frame = av.AudioFrame.from_ndarray(wave[None, k : k + 1024], format="fltp", layout="mono")
                frame.sample_rate = rate
                frame.pts = int(start * rate) + k
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert tone_peak(read_audio(path, 2.2, 0.5), rate)[0] == pytest.approx(880, abs=3)
    assert np.abs(read_audio(path, 1.2, 0.5)).max() < 1e-3
    assert tone_peak(read_audio(path, 0.2, 0.5), rate)[0] == pytest.approx(440, abs=3)


def test_read_audio_errors(video_only, tmp_path):
    with pytest.raises(NoAudioStream):
        read_audio(video_only)
    with pytest.raises(MissingMedia):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(ValueError):
        read_audio(video_only, 0.0, -1.0)


# ---------------------------------------------------------------- read_segments


def test_read_segments_grid_frames_and_audio(click_video):
    segs = read_segments(click_video, size_px=None, sample_rate_hz=16000, start_sec=0.25)
    assert [s.index for s in segs] == [0, 1]  # 0.25-1.25, 1.25-2.25; 2.25-3.25 runs past the end
    for s in segs:
        k = round(s.start_sec * 30)
        assert s.start_sec == pytest.approx(k / 30, abs=1e-6)  # on the frame grid
        assert s.start_sec <= 0.25 + s.index + 1e-6 < s.start_sec + 1 / 30
        assert index_of(s.frame) == k
        assert s.audio is not None and s.audio.shape == (16000,)
        click = 0.5 + s.index  # audio starts at the frame's own time
        assert abs(int(np.argmax(np.abs(s.audio))) - (click - s.start_sec) * 16000) <= 16


def test_read_segments_match_read_frames_and_read_audio(long_video, monkeypatch):
    monkeypatch.setattr(_base, "SEEK_THRESHOLD_SEC", 1e9)  # read_audio from the start, as read_segments does
    segs = read_segments(long_video, size_px=(16, 24), sample_rate_hz=16000, segment_sec=1.0, hop_sec=1.3)
    assert len(segs) == 9  # starts 0, 1.3, ..., 10.4 (ends 11.4 <= 12)
    frames = read_frames(long_video, [1.3 * s.index for s in segs], size_px=(16, 24))
    for s, img, t in zip(segs, frames.images, frames.times_sec):
        assert s.start_sec == t
        np.testing.assert_array_equal(s.frame, img)
        np.testing.assert_array_equal(s.audio, read_audio(long_video, s.start_sec, 1.0))


def test_read_segments_overlapping_and_end(tone_video):
    segs = read_segments(tone_video, size_px=(8, 8), sample_rate_hz=8000, segment_sec=1.0, hop_sec=0.5)
    assert [s.start_sec for s in segs] == pytest.approx([0.0, 0.48, 1.0, 1.48, 2.0])  # 0.5 → frame at 0.48
    assert all(s.audio.shape == (8000,) for s in segs)
    ended = read_segments(tone_video, size_px=(8, 8), sample_rate_hz=8000, end_sec=2.0)
    assert [s.index for s in ended] == [0, 1]


def test_read_segments_frames_per_segment(tone_video):
    segs = read_segments(tone_video, size_px=None, sample_rate_hz=16000, frames_per_segment=4)
    assert len(segs) == 3
    for s in segs:
        assert s.frames.shape == (4, 64, 96, 3)
        np.testing.assert_array_equal(s.frames[0], s.frame)
        assert [index_of(f) for f in s.frames] == [expected_index(s.index + j * 0.25, 25, 75) for j in range(4)]


def test_read_segments_video_only(video_only):
    with pytest.raises(NoAudioStream):
        read_segments(video_only, size_px=None, sample_rate_hz=16000)
    segs = read_segments(video_only, size_px=None, sample_rate_hz=16000, require_audio=False, hop_sec=0.5)
    assert [s.start_sec for s in segs] == pytest.approx([0.0, 0.48, 1.0])  # the video lasts 2 s
    assert all(s.audio is None for s in segs)


def test_read_segments_arguments(tone_video, wav_mono):
    with pytest.raises(ValueError):
        read_segments(tone_video, size_px=None, sample_rate_hz=16000, frames_per_segment=0)
    with pytest.raises(ValueError):
        read_segments(tone_video, size_px=None, sample_rate_hz=16000, hop_sec=0.0)
    with pytest.raises(NoVideoStream):
        read_segments(wav_mono, size_px=None, sample_rate_hz=16000)


# ---------------------------------------------------------------- read_image


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (valid CRCs; a few bytes of pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def _encoded(fmt: str, **kw) -> tuple[bytes, np.ndarray]:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue(), rgb


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_read_image_bytes_and_path(tmp_path, fmt):
    data, rgb = _encoded(fmt)
    img = read_image(data)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - rgb).mean() < 4
    (tmp_path / "x.img").write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / "x.img"), img)
    np.testing.assert_array_equal(read_image(memoryview(data)), img)


def test_read_image_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data, _ = _encoded("JPEG", exif=exif)
    assert read_image(data).shape == (30, 20, 3)


def test_read_image_errors(tmp_path):
    with pytest.raises(CorruptMedia):
        read_image(b"this is not an image at all")
    with pytest.raises(CorruptMedia):
        read_image(b"")
    with pytest.raises(CorruptMedia):
        read_image(_encoded("PNG")[0][:60])  # truncated
    with pytest.raises(MissingMedia):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_read_image_huge_header_is_refused_before_decoding(side):
    with pytest.raises(MediaTooLarge):
        read_image(_png_header(side, side))
    with pytest.raises(MediaTooLarge):
        read_image(_encoded("PNG")[0], max_pixels=100)


def test_read_audio_passthrough_keeps_time(tmp_path):
    """Opus in WebM decodes to mono float at 48 kHz: no resampling, timestamps in the 1 ms stream clock."""
    if not _has_encoder("libvpx"):
        pytest.skip("no libvpx encoder")
    path = tmp_path / "pt.webm"
    write_video(path, gray_frames(75), 25, video_codec="libvpx", audio=clicks([1.2345], 3.0, 48000), audio_codec="libopus", audio_bitrate=128_000)
    out = read_audio(path, 1.0, 0.5, sample_rate_hz=48000)
    assert abs(int(np.argmax(np.abs(out))) - 0.2345 * 48000) <= 48


@pytest.mark.timeout(60)
def test_read_frames_seek_with_one_keyframe_does_not_loop(tmp_path, monkeypatch):
    """A seek lands on the only keyframe (t=0), still far behind the target: decode on, never seek again."""
    path = tmp_path / "one_gop.mp4"
    write_video(path, gray_frames(150), 25, gop=1000)  # 6 s, a single keyframe
    monkeypatch.setattr(_base, "SEEK_THRESHOLD_SEC", 0.5)
    got = read_frames(path, [4.0, 5.9, 1.0])
    np.testing.assert_allclose(got.times_sec, [4.0, 5.88, 1.0], atol=1e-6)
    for img, i in zip(got.images, [100, 147, 25]):
        assert abs(float(img.mean()) - (3 * i) % 256) <= 2


def test_frame_gap_skips_grid_positions_instead_of_repeating_a_segment(tmp_path):
    """A 3.5 s hole in the frames (no new frame shown at 2 s, 3 s, 4 s): those grid positions are
    skipped and recorded in ``gaps``, never emitted as copies of the frame held since 1.0 s."""
    from avlearn.media import read_segments

    times = [i * 0.1 for i in range(11)] + [4.5 + i * 0.1 for i in range(16)]  # 0.0..1.0, then 4.5..6.0
    path = tmp_path / "gap.mp4"
    write_video(path, gray_frames(len(times)), 10, frame_times_sec=times, audio=sine(440, 6.2, 16000), sample_rate_hz=16000)
    segs = read_segments(path, size_px=None, sample_rate_hz=16000, segment_sec=1.0, hop_sec=1.0)
    starts = [s.start_sec for s in segs]
    assert len(set(starts)) == len(starts), starts  # no two segments share a frame (and so an audio window)
    assert [s.index for s in segs] == [0, 1, 5]  # 0 s, 1 s, then 5 s
    assert [g["index"] for g in segs.gaps] == [2, 3, 4] and all(g["frame_sec"] == pytest.approx(1.0, abs=1e-3) for g in segs.gaps)
    assert [index_of(s.frame) for s in segs] == [0, 10, 16]  # frame 16 is shown at 4.5 + 0.5 s


def test_frame_gap_record_survives_the_sandbox(tmp_path):
    from avlearn.media import read_segments, safe_call

    times = [0.0, 0.5, 1.0, 2.6, 3.0, 3.5]
    path = tmp_path / "gap2.mp4"
    write_video(path, gray_frames(len(times)), 10, frame_times_sec=times, audio=sine(440, 4.6, 16000), sample_rate_hz=16000)
    segs = safe_call(read_segments, path, path=str(path), size_px=None, sample_rate_hz=16000, segment_sec=1.0, hop_sec=1.0)
    assert [s.index for s in segs] == [0, 1, 3, 4] and [g["index"] for g in segs.gaps] == [2]
