"""The index bundle format: file names, the ``manifest.json`` schema (:class:`Manifest`), versioned publishing.

Layout (``OUT`` is a symlink to the current version)::

    OUT -> OUT.versions/<bundle_id>
    OUT.versions/<bundle_id>/
        manifest.json           Manifest (format_version, bundle_id, checkpoint_hash, counts, dims, ...)
        metadata.sqlite         segment id -> clip_id, source, start_sec, labels
        image.faiss  audio.faiss               inner-product indices over L2-normalised rows
        image.ids.npy  audio.ids.npy           (N,) int64 segment ids, ascending; row i = index position i
        image.vectors.npy  audio.vectors.npy   (N, D) float16 normalised vectors (memory-mapped when read)

A build (``avlearn.index.build``) writes ``OUT.versions/.tmp-<bundle_id>-<pid>/``, renames it to
``OUT.versions/<bundle_id>`` and swaps the ``OUT`` symlink with ``os.replace`` (atomic): a
reader (``avlearn.index.bundle``) sees the old bundle or the new one, never a half-written one,
and a crash mid-build leaves the previous bundle untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avlearn.atomic import atomic_write_json, fsync_dir, fsync_tree

FORMAT_VERSION = 1
MODALITIES = ("image", "audio")
MANIFEST = "manifest.json"
METADATA = "metadata.sqlite"
KEEP_VERSIONS = 2  # the current bundle and the one before it (readers may still hold it)


def index_file(root: Path, modality: str) -> Path:
    return root / f"{modality}.faiss"


def ids_file(root: Path, modality: str) -> Path:
    return root / f"{modality}.ids.npy"


def vectors_file(root: Path, modality: str) -> Path:
    return root / f"{modality}.vectors.npy"


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` holds; written once per build, read by every bundle reader.

    Attributes:
        bundle_id: unique per build, sortable by time (:func:`new_bundle_id`).
        checkpoint_hash: the embedding model's weights hash (a server refuses a bundle of another model).
        counts: vectors per modality ("image", "audio") and "segments" (metadata rows).
        dims: embedding size per modality.
        factories: FAISS factory string per modality.
        search_params: tuned search parameters per modality (``faiss_index.SearchParams.to_dict``).
        recall: measured recall@k per modality against exact search (None: exact index).
        recall_detail: how recall was measured (k, target, queries, query modality, memory estimate).
        segment_sec, hop_sec: the segment grid the embeddings were cut on.
        checkpoint, embeddings, source: where the model, the embedding shards and their media came from.
        build_sec: stage timings of the build.
        created: ISO-8601 UTC time of the build.
    """

    bundle_id: str
    counts: dict[str, int]
    dims: dict[str, int]
    factories: dict[str, str]
    search_params: dict[str, dict[str, Any]]
    checkpoint_hash: str | None = None
    recall: dict[str, float | None] = field(default_factory=dict)
    recall_detail: dict[str, dict[str, Any]] = field(default_factory=dict)
    segment_sec: float | None = None
    hop_sec: float | None = None
    checkpoint: str | None = None
    embeddings: str | None = None
    source: str | None = None  # the media the embeddings were made from (a folder, manifest or shard dir), as given to `avlearn embed`
    metric: str = "inner_product"
    gpu_build: bool = False
    build_sec: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse a manifest; unknown keys (from a newer writer of the same format) are ignored.

        Raises:
            ValueError: another format version, or a required field missing.
        """
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"bundle format_version {version} is not supported (expected {FORMAT_VERSION})")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"malformed bundle manifest: {exc}") from None

    @classmethod
    def read(cls, root: str | os.PathLike) -> Manifest:
        """The manifest of the bundle version dir ``root``.

        Raises:
            FileNotFoundError: no manifest there.
            ValueError: unreadable JSON, another format version, or missing fields.
        """
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no index bundle at {root} (missing {MANIFEST})")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def write(self, root: str | os.PathLike) -> None:
        atomic_write_json(Path(root) / MANIFEST, self.to_dict(), sort_keys=True)


# --- versions and publishing ---------------------------------------------------------------


def new_bundle_id() -> str:
    """Unique per build and sortable by time: ``YYYYmmddTHHMMSS-<8 hex>``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def versions_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.versions"


def staging_dir(out: str | os.PathLike, bundle_id: str) -> Path:
    """A fresh temp dir beside the target (same filesystem, so the publish is a rename)."""
    d = versions_dir(out) / f".tmp-{bundle_id}-{os.getpid()}"
    d.mkdir(parents=True)
    return d


def publish(staging: str | os.PathLike, out: str | os.PathLike, bundle_id: str, *, keep: int = KEEP_VERSIONS) -> Path:
    """Move a complete staging dir into place and point ``out`` at it atomically.

    An existing plain directory at ``out`` (not a symlink) is first renamed aside into
    the versions dir. Old versions beyond ``keep`` and stale temp dirs are removed.
    Returns the published version dir.
    """
    out = Path(out)
    vdir = versions_dir(out)
    final = vdir / bundle_id
    fsync_tree(staging)
    os.replace(staging, final)
    if out.exists() and not out.is_symlink():
        aside = vdir / f"legacy-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        os.replace(out, aside)
    link_tmp = out.parent / f".{out.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.join(vdir.name, bundle_id), link_tmp)
    os.replace(link_tmp, out)
    fsync_dir(out.parent)
    collect_garbage(out, keep=keep)
    return final


def collect_garbage(out: str | os.PathLike, *, keep: int = KEEP_VERSIONS) -> None:
    """Remove versions older than the newest ``keep`` (never the current one) and dead temp dirs."""
    out = Path(out)
    vdir = versions_dir(out)
    if not vdir.is_dir():
        return
    current = out.resolve() if out.is_symlink() else None
    versions = sorted((p for p in vdir.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for p in versions[:-keep] if keep > 0 else versions:
        if current is None or p.resolve() != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in vdir.glob(".tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
