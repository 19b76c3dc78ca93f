"""A broken-file corpus: every decode returns a valid result or raises a typed MediaError, and nothing crashes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from _media_gen import gray_frames, sine
from PIL import Image

from avlearn.media import MediaError, MediaInfo, Segment, probe, read_audio, read_frames, read_segments, safe_call
from avlearn.media.writer import write_video


def _corpus(good: Path, out: Path) -> dict[str, Path]:
    """Broken variants of a good file, named by how they were broken."""
    data = good.read_bytes()
    rng = np.random.default_rng(1234)
    variants: dict[str, bytes] = {
        "trunc10": data[: len(data) // 10],
        "trunc50": data[: len(data) // 2],
        "trunc90": data[: len(data) * 9 // 10],
        "header_only": data[:64],
    }
    for k, (lo, hi) in enumerate([(0.4, 0.6), (0.1, 0.9)]):
        buf = bytearray(data)
        where = rng.integers(int(lo * len(data)), int(hi * len(data)), size=300)
        for i in where:
            buf[i] = int(rng.integers(0, 256))
        variants[f"flipped{k}"] = bytes(buf)
    buf = bytearray(data)
    mid = len(data) // 2
    buf[mid : mid + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    variants["garbled_block"] = bytes(buf)
    paths = {}
    for name, blob in variants.items():
        path = out / f"{good.stem}_{name}{good.suffix}"
        path.write_bytes(blob)
        paths[path.name] = path
    return paths


@pytest.fixture(scope="module")
def corpus(good_mp4, good_wav, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("corpus")
    good_mkv = out / "good.mkv"  # a streamable container: a truncated one still holds decodable packets
    write_video(good_mkv, gray_frames(100, (64, 96)), 25, audio=sine(440.0, 4.0, 16000, 0.3), sample_rate_hz=16000)
    paths = {**_corpus(good_mp4, out), **_corpus(good_wav, out), **_corpus(good_mkv, out)}
    extra = {
        "empty.mp4": b"",
        "text.mp4": b"hello, this is a text file and not a video\n" * 20,
        "random.mp4": np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "random.wav": b"RIFF" + np.random.default_rng(8).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    }
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(png, format="PNG")
    extra["image.mp4"] = png.getvalue()
    for name, blob in extra.items():
        (out / name).write_bytes(blob)
        paths[name] = out / name
    return paths


# (function, extra args, kwargs): the library functions themselves, so the safe-mode child
# (forked from a server that preloaded avlearn.media) imports nothing else
OPS = {
    "probe": (probe, (), {}),
    "frames": (read_frames, ([0.5, 2.0],), {"size_px": (16, 24)}),
    "audio": (read_audio, (0.0, 2.0), {}),
    "segments": (read_segments, (), {"size_px": (16, 24), "sample_rate_hz": 16000, "require_audio": False}),
}


def _valid(op: str, result) -> bool:
    if op == "probe":
        return isinstance(result, MediaInfo) and result.duration_sec >= 0 and (result.has_audio or result.has_video)
    if op == "frames":
        return result.images.shape == (2, 16, 24, 3) and result.times_sec.shape == (2,)
    if op == "audio":
        return result.shape == (32000,) and result.dtype == np.float32 and bool(np.isfinite(result).all())
    return all(isinstance(s, Segment) and s.frame.shape == (16, 24, 3) for s in result)


def _check(op: str, outcome) -> str:
    if isinstance(outcome, MediaError):
        assert outcome.reason.strip(), f"{op}: an error without a reason"
        return type(outcome).__name__
    assert not isinstance(outcome, BaseException), f"{op}: untyped error {type(outcome).__name__}: {outcome}"
    assert _valid(op, outcome), f"{op}: an invalid result {outcome!r}"
    return "ok"


def test_broken_files_fail_typed_in_process_and_in_safe_mode(corpus):
    summary = {}
    for name, path in sorted(corpus.items()):
        for op, (fn, args, kwargs) in OPS.items():
            try:
                safe = safe_call(fn, path, *args, path=str(path), timeout_sec=60, memory_mb=2048, **kwargs)
            except Exception as exc:  # noqa: BLE001 - checked below
                safe = exc
            got = _check(op, safe)
            if isinstance(safe, MediaError) and "signal" in safe.reason:
                summary[(name, op)] = got
                continue  # it crashed the child: never run it in this process
            try:
                direct = fn(path, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - checked below
                direct = exc
            assert _check(op, direct) == got, f"{name} {op}: in-process {direct!r} vs safe mode {safe!r}"
            summary[(name, op)] = got
    # the obviously hopeless files fail; the mildly damaged ones still give something
    for name in ("empty.mp4", "text.mp4", "random.mp4", "good_header_only.mp4", "good_trunc10.mp4"):
        assert summary[(name, "probe")] != "ok" or summary[(name, "frames")] != "ok", name
    assert summary[("image.mp4", "frames")] != "ok" and summary[("image.mp4", "audio")] != "ok"
    assert summary[("good_trunc90.wav", "audio")] == "ok"
    assert summary[("good_flipped0.mp4", "probe")] == "ok"
    assert summary[("good_trunc50.mkv", "segments")] == "ok"  # the first half still gives segments
    assert summary[("good_trunc50.mkv", "frames")] == "TooShort"  # 0.5 s is there, 2.0 s is not
    print("\n".join(f"{k}: {v}" for k, v in sorted(summary.items())))


def test_missing_and_directory(tmp_path):
    for fn, args, kwargs in OPS.values():
        with pytest.raises(MediaError):
            fn(tmp_path / "missing.mp4", *args, **kwargs)
        with pytest.raises(MediaError):
            fn(tmp_path, *args, **kwargs)
