"""The prepared-shard layout: WebDataset tar shards, their done records, and (de)coding of members.

A shard dir (written by ``avlearn prepare``) holds::

    prepare.json                 parameters + the sorted clip list's hash (see avlearn.data.prepare)
    shard-000012.tar             one group of clips, published by os.replace once complete
    shard-000012.done.json       written after the tar: the clips it covers and their errors
    errors.jsonl                 one record per bad clip: clip_id, path, error type, reason

Inside a tar every segment is a WebDataset sample; its members share the key
``{sanitised clip id}-{8 hex of sha1(clip id)}-{index:05d}``:

    KEY.jpg        frame on screen at the segment start, JPEG
    KEY.f1.jpg ... further frames when frames_per_segment > 1
    KEY.flac       mono audio (16-bit FLAC) or KEY.npy (float16), at sample_rate_hz
    KEY.json       clip_id, path, index, start_sec, labels, visible, sample_rate_hz, segment_sec
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.atomic import atomic_path

FORMAT_VERSION = 1
PREPARE_JSON = "prepare.json"
ERRORS_JSONL = "errors.jsonl"
JPEG_QUALITY = 95
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def shard_name(group: int) -> str:
    return f"shard-{group:06d}.tar"


def done_name(group: int) -> str:
    return f"shard-{group:06d}.done.json"


def segment_key(clip_id: str, index: int) -> str:
    """A WebDataset key (no dots, no slashes) that is unique per (clip, index) and readable."""
    digest = hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:8]
    return f"{_SAFE.sub('_', clip_id)[-80:]}-{digest}-{index:05d}"


def write_shard_atomic(path: str | os.PathLike, samples: Iterable[dict[str, Any]]) -> int:
    """Write WebDataset samples (``__key__`` + ext -> bytes) to ``path`` via a temp name; returns the count.

    Plain ``tarfile`` in WebDataset's layout (members ``KEY.EXT``, sorted by ext
    within a sample); ``import webdataset`` would pull in torch. Entries carry
    mtime 0, so the same samples always give the same bytes.
    """
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for sample in samples:
                key = sample["__key__"]
                for ext in sorted(k for k in sample if not k.startswith("_")):
                    data = sample[ext]
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    info.mtime = 0
                    info.mode = 0o444
                    tar.addfile(info, io.BytesIO(data))
                n += 1
    return n


def iter_tar_samples(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Samples of one shard in file order: ``{"__key__": key, ext: bytes, ...}`` (consecutive members grouped)."""
    current: dict[str, Any] | None = None
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            key, _, ext = base.partition(".")
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            current[ext] = data
    if current is not None:
        yield current


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes, size_px: tuple[int, int] | None = None) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB, resized (bilinear) to (height, width) when given."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        if size_px is not None and img.size != (size_px[1], size_px[0]):
            img = img.resize((size_px[1], size_px[0]), Image.BILINEAR)
        return np.asarray(img)


def encode_audio(wave: np.ndarray, sample_rate_hz: int, audio_format: str) -> tuple[str, bytes]:
    """(n,) float32 mono -> (extension, bytes): ``flac`` (16-bit PCM FLAC) or ``npy`` (float16)."""
    if audio_format == "flac":
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate_hz, format="FLAC", subtype="PCM_16")
        return "flac", buf.getvalue()
    if audio_format == "f16":
        buf = io.BytesIO()
        np.save(buf, wave.astype(np.float16), allow_pickle=False)
        return "npy", buf.getvalue()
    raise ValueError(f"audio_format must be 'flac' or 'f16', not {audio_format!r}")


def decode_audio(ext: str, data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_audio`: (n,) float32."""
    if ext == "flac":
        import soundfile as sf

        wave, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        return wave
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
    raise ValueError(f"unknown audio member .{ext}")


def iter_done_records(shard_dir: str | os.PathLike) -> Iterator[dict]:
    """The done records of a shard dir one at a time, in group order (published shards only).

    Memory: one record at a time (a summary over millions of clips need not hold them all).
    """
    for p in sorted(Path(shard_dir).glob("shard-*.done.json")):  # zero-padded names: group order
        with open(p) as f:
            yield json.load(f)


def read_done_records(shard_dir: str | os.PathLike) -> list[dict]:
    """Every done record of a shard dir, sorted by group (published shards only)."""
    return sorted(iter_done_records(shard_dir), key=lambda r: r["group"])


def read_prepare_config(shard_dir: str | os.PathLike) -> dict:
    with open(Path(shard_dir) / PREPARE_JSON) as f:
        return json.load(f)
