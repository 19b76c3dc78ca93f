"""Crash-safe writes: the one write-then-rename helper of the project.

Every file a reader may open while it is being (re)written — checkpoints, trainer state,
shards, plans, markers, manifests, reload broadcasts — is written to a temp name beside its
target, flushed and fsynced, renamed over the target with ``os.replace`` (atomic on POSIX),
and the directory is fsynced so the rename itself survives a power cut. A reader sees the
old file or the new one, never half of one; a crash leaves at most a ``.NAME.tmp-*`` file, which
:func:`remove_temps` clears.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir", "fsync_tree", "remove_temps", "replace_dir", "temp_name"]


def temp_name(path: str | os.PathLike) -> Path:
    """A unique hidden sibling of ``path`` (same directory, hence same filesystem): ``.NAME.tmp-PID-HEX``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_temps(directory: str | os.PathLike, pattern: str = "*") -> int:
    """Delete the temp files a killed writer left in ``directory`` (names ``.PATTERN.tmp-*``); returns how many."""
    n = 0
    d = Path(directory)
    if d.is_dir():
        for p in d.glob(f".{pattern}.tmp-*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a directory so that renames and new entries in it are durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file under ``root`` and every directory, deepest first."""
    root = Path(root)
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                _fsync_file(p)
        fsync_dir(dirpath)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write ``path``'s new content to; on success it is fsynced and renamed
    onto ``path`` (then the directory is fsynced); on an exception the temp file is removed.

    Example: ``with atomic_path(p) as tmp: torch.save(obj, tmp)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> None:
    """Replace ``path`` with ``obj`` as JSON atomically and durably."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys))


def replace_dir(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Swap a complete directory ``staging`` in as ``target`` (any old ``target`` is moved aside,
    then removed). The files are fsynced first; between the two renames ``target`` is briefly
    absent, never half-written."""
    staging, target = Path(staging), Path(target)
    fsync_tree(staging)
    old = temp_name(target)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    return target
