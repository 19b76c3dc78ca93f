"""One reader of segment records for raw sources and prepared shard dirs.

``iter_segment_records(src)`` yields :class:`SegmentRecord` from

- a raw source (folder | manifest | AudioSet csv; see avlearn.data.sources),
  decoded here with ``avlearn.media.read_segments`` (bad files: logged, skipped), or
- a shard dir written by ``avlearn prepare`` (detected by its prepare.json):
  frames decoded from JPEG (resized to ``size_px`` when given), audio from
  FLAC / float16 (resampled when the shard's rate differs from the one asked).

Work is split without duplicates across DataLoader workers
(``torch.utils.data.get_worker_info``) and DDP ranks (``shard_slice=(rank, world)``):
whole units (shards, or clips of a raw source) when there are at least as many
units as readers, else every reader walks all units and keeps every
``readers``-th record. ``shuffle`` permutes the unit order with ``seed`` (the
same on every reader) and mixes records through a seeded buffer.

``UnitReader`` gives random access by unit instead (a shard's segments as refs from its
tar headers and json members, decoded on demand), for streams that must resume at any
position without decoding what came before (``avlearn.pretext.avc_datasets.StreamingAVC``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlearn.data.sources import DEFAULT_TEMPLATE, Source, is_shard_dir, load_source
from avlearn.data.spans import ClipSpan

log = logging.getLogger(__name__)

DEFAULT_BUFFER = 256


@dataclass
class SegmentRecord:
    """One segment: a frame (or R frames) and the audio that starts at the frame's timestamp.

    Attributes:
        clip_id, path: the clip and its media file.
        index: segment index k within the clip (wanted start = clip start + k * hop_sec).
        start_sec: the frame's own timestamp in the file (on the frame grid).
        frame: (H, W, 3) uint8 RGB.
        audio: (round(segment_sec * sample_rate_hz),) float32 mono, or None (file without audio).
        sample_rate_hz: rate of ``audio``.
        labels, visible: from the source.
        frames: (R, H, W, 3) uint8 when R > 1 frames per segment, else None.
        last_index: the index of the clip's last segment (so a sampler can tell a clip's last
            segment from an interior one in a stream), or None when unknown (shards written
            before it was stored).
    """

    clip_id: str
    path: str
    index: int
    start_sec: float
    frame: np.ndarray
    audio: np.ndarray | None
    sample_rate_hz: int
    labels: tuple[str, ...] = ()
    visible: tuple[str, ...] = ()
    frames: np.ndarray | None = None
    last_index: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.clip_id, self.index)


def _reader_index(shard_slice: tuple[int, int]) -> tuple[int, int]:
    """(this reader's index, number of readers) over DDP ranks x DataLoader workers."""
    rank, world = shard_slice
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard_slice must be (rank, world) with 0 <= rank < world, got {shard_slice}")
    wid, nw = 0, 1
    torch = sys.modules.get("torch")  # only consult torch when the caller already uses it
    if torch is not None:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            wid, nw = info.id, info.num_workers
    return rank * nw + wid, world * nw


def _as_size(size_px: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size_px is None:
        return None
    if isinstance(size_px, int):
        return (size_px, size_px)
    h, w = size_px
    return int(h), int(w)


def _fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    if wave.shape[0] >= n:
        return wave[:n]
    return np.pad(wave, (0, n - wave.shape[0]))


def resample_audio(wave: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """(n,) float32 at from_hz -> (round(n * to_hz / from_hz),) float32 at to_hz (soxr, high quality)."""
    if from_hz == to_hz:
        return wave
    import soxr

    out = soxr.resample(wave.astype(np.float32, copy=False), from_hz, to_hz)
    return _fit_length(out.astype(np.float32, copy=False), int(round(wave.shape[0] * to_hz / from_hz)))


def _shuffled(items: Iterator[SegmentRecord], buffer_size: int, rng: np.random.Generator) -> Iterator[SegmentRecord]:
    buf: list[SegmentRecord] = []
    for item in items:
        if len(buf) < buffer_size:
            buf.append(item)
            continue
        i = int(rng.integers(len(buf)))
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)  # type: ignore[arg-type]
    yield from buf


def iter_segment_records(
    src: str | os.PathLike | Source,
    *,
    size_px: int | tuple[int, int] | None = None,
    sample_rate_hz: int = 16000,
    segment_sec: float = 1.0,
    hop_sec: float = 1.0,
    shuffle: bool = False,
    seed: int = 0,
    shard_slice: tuple[int, int] = (0, 1),
    frames_per_segment: int | None = None,
    require_audio: bool = True,
    buffer_size: int = DEFAULT_BUFFER,
    media_dir: str | os.PathLike | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> Iterator[SegmentRecord]:
    """Yield segment records of a raw source or a shard dir (see the module docstring).

    Args:
        size_px: (height, width) or an int for square frames; None keeps the stored/native size.
        sample_rate_hz: audio rate of the records.
        segment_sec, hop_sec: must match a shard dir's own (shards cannot be re-cut).
        frames_per_segment: R; None = 1 for raw sources, the stored R for shards.
        require_audio: skip (raw: log) files/records without audio.

    Raises:
        ValueError: segment_sec / hop_sec / frames_per_segment conflict with a shard dir.
    """
    me, readers = _reader_index(shard_slice)
    size = _as_size(size_px)
    if not isinstance(src, Source) and is_shard_dir(src):
        units, reader = shard_units(Path(src), size, sample_rate_hz, segment_sec, hop_sec, frames_per_segment, require_audio)
    else:
        source = src if isinstance(src, Source) else load_source(src, media_dir=media_dir, template=template)
        units = list(source.spans)
        reader = _raw_reader(size, sample_rate_hz, segment_sec, hop_sec, frames_per_segment or 1, require_audio)
    order = list(range(len(units)))
    if shuffle:
        np.random.default_rng(seed).shuffle(order)

    def stream() -> Iterator[SegmentRecord]:
        if len(units) >= readers:
            for u in order[me::readers]:
                yield from reader(units[u])
            return
        n = 0
        for u in order:
            for rec in reader(units[u]):
                if n % readers == me:
                    yield rec
                n += 1

    if shuffle:
        yield from _shuffled(stream(), buffer_size, np.random.default_rng([seed, me, readers]))
    else:
        yield from stream()


def load_segment_records(src: str | os.PathLike | Source, **kwargs) -> list[SegmentRecord]:
    """All records of a (small) source in memory; same arguments as :func:`iter_segment_records`."""
    return list(iter_segment_records(src, **kwargs))


def _raw_reader(size, sample_rate_hz: int, segment_sec: float, hop_sec: float, frames_per_segment: int, require_audio: bool):
    from avlearn.media import MediaError, read_segments

    def read(span: ClipSpan) -> Iterator[SegmentRecord]:
        try:
            segments = read_segments(
                span.path,
                size_px=size,
                sample_rate_hz=sample_rate_hz,
                segment_sec=segment_sec,
                hop_sec=hop_sec,
                start_sec=span.start_sec,
                end_sec=span.end_sec,
                require_audio=require_audio,
                frames_per_segment=frames_per_segment,
            )
        except MediaError as exc:
            log.warning("skipping %s: %s", span.path, exc)
            return
        last = segments[-1].index if segments else None
        for seg in segments:
            yield SegmentRecord(
                span.clip_id, span.path, seg.index, seg.start_sec, seg.frame, seg.audio, sample_rate_hz, span.labels, span.visible, seg.frames, last
            )

    return read


def shard_units(root: Path, size, sample_rate_hz: int, segment_sec: float, hop_sec: float, frames_per_segment: int | None, require_audio: bool):
    """The published tars of a prepared dir and a reader for one of them.

    Returns ``(units, read)``: ``units`` lists the tar paths; ``read(unit)`` yields the
    SegmentRecords of that tar (frames resized to ``size``, audio at ``sample_rate_hz``);
    ``read(unit, clips=ids)`` only those of the clips in ``ids`` (the others' media are not decoded).
    Used by ``iter_segment_records`` and by the indexer (one work unit per tar).
    """
    from avlearn.data.shards import decode_audio, decode_jpeg, iter_tar_samples, read_done_records, read_prepare_config

    params = read_prepare_config(root)["params"]
    for name, want in (("segment_sec", segment_sec), ("hop_sec", hop_sec)):
        if abs(float(params[name]) - float(want)) > 1e-9:
            raise ValueError(f"{root} was prepared with {name}={params[name]}, but {name}={want} was asked; re-run prepare or ask for {params[name]}")
    stored_r = int(params["frames_per_segment"])
    r = stored_r if frames_per_segment is None else frames_per_segment
    if r != stored_r and r != 1:
        raise ValueError(f"{root} stores {stored_r} frame(s) per segment; cannot give {r}")
    stored_rate = int(params["sample_rate_hz"])
    n_audio = int(round(segment_sec * sample_rate_hz))
    units = [root / rec["shard"] for rec in read_done_records(root) if rec["segments"] > 0]

    def read(shard: Path, clips: set[str] | None = None) -> Iterator[SegmentRecord]:
        import json

        for sample in iter_tar_samples(shard):
            meta = json.loads(sample["json"])
            if clips is not None and meta["clip_id"] not in clips:
                continue
            audio = None
            for ext in ("flac", "npy"):
                if ext in sample:
                    audio = _fit_length(resample_audio(decode_audio(ext, sample[ext]), stored_rate, sample_rate_hz), n_audio)
            if audio is None and require_audio:
                continue
            frame = decode_jpeg(sample["jpg"], size)
            frames = None
            if r > 1:
                frames = np.stack([frame] + [decode_jpeg(sample[f"f{j}.jpg"], size) for j in range(1, r)])
            yield SegmentRecord(
                meta["clip_id"],
                meta["path"],
                int(meta["index"]),
                float(meta["start_sec"]),
                frame,
                audio,
                sample_rate_hz,
                tuple(meta["labels"]),
                tuple(meta["visible"]),
                frames,
                meta.get("last_index"),
            )

    return units, read


# ---------------------------------------------------------------- random access by unit (resumable streams)


def _decoded(rec: SegmentRecord) -> Callable[[bool, bool], SegmentRecord]:
    """A loader for a record that is already decoded (raw sources): returns it whatever is asked."""

    def load(frame: bool, audio: bool) -> SegmentRecord:
        return rec

    return load


@dataclass
class SegmentRef:
    """A segment known by its metadata only; :meth:`load` decodes it (frame and/or audio).

    ``unit`` is the index of the unit (shard, or clip of a raw source) it came from.
    """

    clip_id: str
    path: str
    index: int
    start_sec: float
    last_index: int | None
    labels: tuple[str, ...]
    visible: tuple[str, ...]
    unit: int
    _load: Callable[[bool, bool], SegmentRecord]

    def load(self, *, frame: bool = True, audio: bool = True) -> SegmentRecord:
        """The decoded record; a part not asked for may be left empty (frame (0, 0, 3), audio None)."""
        return self._load(frame, audio)


class UnitReader:
    """Random access to the units of a source: whole shards of a prepared dir, or clips of a raw source.

    ``refs(u)`` lists the segments of unit ``u`` in file order. For a shard dir it reads only the tar
    headers and the small json members (the frame JPEG and the audio are decoded on ``load``), so
    seeking into the middle of an epoch decodes nothing already consumed. A raw clip cannot be
    read partially: ``refs(u)`` decodes the clip. ``sizes[u]`` is the unit's segment count when
    known without reading it (shards), else None.

    ``size_px``: frames are resized to it on load; None keeps the stored/native size.
    """

    def __init__(
        self,
        src: str | os.PathLike,
        *,
        size_px: int | tuple[int, int] | None,
        sample_rate_hz: int,
        segment_sec: float,
        hop_sec: float,
        require_audio: bool = True,
    ) -> None:
        self.size = _as_size(size_px)
        self.sample_rate_hz, self.require_audio = sample_rate_hz, require_audio
        self.is_shards = is_shard_dir(src)
        if self.is_shards:
            from avlearn.data.shards import read_done_records, read_prepare_config

            root = Path(src)
            shard_units(root, self.size, sample_rate_hz, segment_sec, hop_sec, 1, require_audio)  # checks the cut
            done = [rec for rec in read_done_records(root) if rec["segments"] > 0]
            self.units: list = [root / rec["shard"] for rec in done]
            self.sizes: list[int | None] = [int(rec["segments"]) for rec in done]
            self.stored_rate = int(read_prepare_config(root)["params"]["sample_rate_hz"])
            self.n_audio = int(round(segment_sec * sample_rate_hz))
        else:
            self.units = list(load_source(src).spans)
            self.sizes = [None] * len(self.units)
            self._raw = _raw_reader(self.size, sample_rate_hz, segment_sec, hop_sec, 1, require_audio)

    def __len__(self) -> int:
        return len(self.units)

    def refs(self, u: int) -> list[SegmentRef]:
        if not self.is_shards:
            out = []
            for rec in self._raw(self.units[u]):
                out.append(SegmentRef(rec.clip_id, rec.path, rec.index, rec.start_sec, rec.last_index, rec.labels, rec.visible, u, _decoded(rec)))
            return out
        return self._shard_refs(u)

    def _shard_refs(self, u: int) -> list[SegmentRef]:
        import json
        import tarfile

        path = Path(self.units[u])
        members: dict[str, dict[str, tuple[int, int]]] = {}
        with tarfile.open(path, "r:") as tar:  # seekable: reads headers, skips the data
            for m in tar:
                if m.isfile():
                    key, _, ext = os.path.basename(m.name).partition(".")
                    members.setdefault(key, {})[ext] = (m.offset_data, m.size)
        out = []
        with open(path, "rb") as f:
            for parts in members.values():
                has_audio = "flac" in parts or "npy" in parts
                if "json" not in parts or "jpg" not in parts or (self.require_audio and not has_audio):
                    continue
                off, n = parts["json"]
                f.seek(off)
                meta = json.loads(f.read(n))
                load = self._shard_loader(path, parts, meta)
                out.append(
                    SegmentRef(
                        meta["clip_id"], meta["path"], int(meta["index"]), float(meta["start_sec"]), meta.get("last_index"),
                        tuple(meta["labels"]), tuple(meta["visible"]), u, load,
                    )
                )  # fmt: skip
        return out

    def _shard_loader(self, path: Path, parts: dict[str, tuple[int, int]], meta: dict) -> Callable[[bool, bool], SegmentRecord]:
        from avlearn.data.shards import decode_audio, decode_jpeg

        def load(frame: bool, audio: bool) -> SegmentRecord:
            with open(path, "rb") as f:

                def read(ext: str) -> bytes:
                    off, n = parts[ext]
                    f.seek(off)
                    return f.read(n)

                img = decode_jpeg(read("jpg"), self.size) if frame else np.zeros((0, 0, 3), np.uint8)
                wave = None
                if audio:
                    for ext in ("flac", "npy"):
                        if ext in parts:
                            wave = _fit_length(resample_audio(decode_audio(ext, read(ext)), self.stored_rate, self.sample_rate_hz), self.n_audio)
            return SegmentRecord(
                meta["clip_id"], meta["path"], int(meta["index"]), float(meta["start_sec"]), img, wave, self.sample_rate_hz,
                tuple(meta["labels"]), tuple(meta["visible"]), None, meta.get("last_index"),
            )  # fmt: skip

        return load


def reader_units(n_units: int, me: int, readers: int, order: Sequence[int]) -> tuple[list[int], int]:
    """The units reader ``me`` of ``readers`` walks, and the stride of its share within them.

    With at least as many units as readers each reader owns whole units (``order[me::readers]``,
    stride 1); else every reader walks all units and keeps every ``readers``-th item (stride = readers).
    """
    if n_units >= readers:
        return list(order[me::readers]), 1
    return list(order), readers
