"""Training samples streamed from a frame shard dir (``avlearn prepare --kind frames``), shard by shard.

An epoch is ``per_sequence`` samples of every sequence. :func:`avlearn.data.frame_shards.split_epoch`
deals the sequences to ranks (contiguous runs of shards, equal counts per rank); a DataLoader worker
takes a contiguous part of its rank's list. A reader then goes through its list a window of at
most ``max_shards`` shards at a time: it decodes its own sequences of those shards, yields their
``per_sequence`` samples each in a shuffled order, and drops them before the next window. So every
rank/worker reads each of its shards once per epoch and holds at most ``max_shards`` shards' frames;
the dataset counts what it holds (``held_shards``, ``peak_shards``, ``peak_bytes``, ``shards_read``).

Sample ``k`` of sequence ``uid`` in epoch ``e`` is a pure function of ``(seed, e, uid, k)``, whatever
the world size or worker count; each sample dict carries ``"seq"``: the sequence's uid (long).

Resume by cursor (the loop's ``DataCursor`` protocol, as ``StreamingAVC``): while training every sample
carries ``"_cursor"`` = (logical worker, window, next item of the window) as a (3,) long tensor;
:meth:`load_state_dict` hands the last consumed ones back and the next pass starts there: the windows
before are skipped unread, the current one is decoded again. Loader worker ``w`` plays logical worker
``(w + last_worker + 1) % workers``; a resume needs the same worker count.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from avlearn.data.frame_shards import SequenceRef, read_sequences, split_epoch, split_workers

DEFAULT_MAX_SHARDS = 2


class SequenceStream(IterableDataset):
    """Base of the shard-streaming datasets; subclasses define :meth:`load` and :meth:`sample`.

    Args:
        shard_dir: a frame shard dir.
        refs: the sequences to use (``avlearn.data.frame_shards.sequence_refs``, filtered).
        per_sequence: samples of each sequence per epoch.
        seed: the stream's seed.
        rank, world_size: this process's share (``split_epoch``).
        shuffle: permute shards per epoch and samples within a window (training).
        fixed: ignore ``set_epoch`` (a fixed validation set).
        max_shards: shards held at once per reader.
    """

    shards_by_worker = True  # each DataLoader worker reads its own part: the training loop may give it workers

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        refs: list[SequenceRef],
        *,
        per_sequence: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        fixed: bool = False,
        max_shards: int = DEFAULT_MAX_SHARDS,
    ) -> None:
        if not refs:
            raise ValueError(f"{os.fspath(shard_dir)}: no usable sequence")
        if per_sequence < 1 or max_shards < 1:
            raise ValueError("per_sequence and max_shards must be >= 1")
        self.shard_dir, self.refs, self.per_sequence = str(shard_dir), list(refs), int(per_sequence)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.shuffle, self.fixed, self.max_shards = shuffle, fixed, int(max_shards)
        self.epoch = 0
        self._resume: dict[str, Any] | None = None
        self.held_shards = self.peak_shards = self.held_bytes = self.peak_bytes = 0
        self.shards_read: list[tuple[int, str]] = []  # (epoch, shard), in this process

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (a cursor handed over earlier is dropped)."""
        self.epoch = 0 if self.fixed else int(epoch)
        self._resume = None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue the current epoch from cursors ``{"epoch", "workers", "cursors": {worker: [window, next item]}, "last_worker"}``."""
        if state is not None and int(state["epoch"]) != self.epoch:
            raise ValueError(f"cursor of epoch {state['epoch']} handed to epoch {self.epoch}; call set_epoch first")
        self._resume = state

    def plan(self, epoch: int) -> list[tuple[SequenceRef, int]]:
        """This rank's (sequence, copy) list of ``epoch``, in reading order."""
        return split_epoch(self.refs, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size, shuffle=self.shuffle)

    def __len__(self) -> int:
        return len(self.plan(0)) * self.per_sequence  # the same for every epoch and rank

    def load(self, ref: SequenceRef, frames: np.ndarray, times_sec: np.ndarray, meta: dict) -> Any:
        """What is held of one decoded sequence (its frames' ``nbytes`` are counted)."""
        raise NotImplementedError

    def read_kwargs(self) -> dict[str, Any]:
        """Resizing for :func:`avlearn.data.frame_shards.read_sequences` (``size_px`` or ``short_px``)."""
        return {}

    def sample(self, window: list[Any], j: int, k: int, uid: int) -> dict[str, torch.Tensor]:
        """Sample ``k`` of ``window[j]``, sequence ``uid``: a pure function of (seed, epoch, uid, k) (the window's
        other sequences are there for a fallback)."""
        raise NotImplementedError

    def _windows(self, entries: list[tuple[SequenceRef, int]]) -> list[list[tuple[SequenceRef, int]]]:
        windows: list[list[tuple[SequenceRef, int]]] = []
        shards: list[str] = []
        for ref, copy in entries:
            if not windows or (ref.shard not in shards and len(shards) >= self.max_shards):
                windows.append([])
                shards = []
            if ref.shard not in shards:
                shards.append(ref.shard)
            windows[-1].append((ref, copy))
        return windows

    def __iter__(self):
        epoch = self.epoch
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        resume = self._resume
        if resume is not None and int(resume["workers"]) != workers:
            raise ValueError(f"the cursor was saved with {resume['workers']} data worker(s); resume with that many (--workers {resume['workers']})")
        worker = wid if resume is None else (wid + int(resume["last_worker"]) + 1) % workers
        w0, i0 = (0, 0) if resume is None else tuple(int(x) for x in resume["cursors"].get(worker, (0, 0)))
        entries = split_workers(self.plan(epoch), worker, workers)
        for w, window in enumerate(self._windows(entries)):
            if w < w0 or (w == w0 and i0 >= len(window) * self.per_sequence):
                continue  # consumed before the resume: not read
            shards = list(dict.fromkeys(ref.shard for ref, _ in window))
            loaded: dict[str, Any] = {}
            for shard in shards:
                wanted = {ref.clip_id for ref, _ in window if ref.shard == shard}
                by_id = {ref.clip_id: ref for ref, _ in window if ref.shard == shard}
                for clip_id, frames, times, meta in read_sequences(self.shard_dir, shard, wanted, **self.read_kwargs()):
                    loaded[clip_id] = self.load(by_id[clip_id], frames, times, meta)
                    self.held_bytes += frames.nbytes
                self.shards_read.append((epoch, shard))
                self.held_shards += 1
                self.peak_shards = max(self.peak_shards, self.held_shards)
                self.peak_bytes = max(self.peak_bytes, self.held_bytes)
            held = [loaded[ref.clip_id] for ref, _ in window]
            items = [(j, k) for j in range(len(window)) for k in range(self.per_sequence)]
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch, self.rank, worker, w, 17]).permutation(len(items))
                items = [items[i] for i in order]
            for i, (j, k) in enumerate(items):
                if w == w0 and i < i0:
                    continue
                ref, copy = window[j]
                kk = copy * self.per_sequence + k  # a repeated sequence gets new samples
                out = self.sample(held, j, kk, ref.uid)
                out["seq"] = torch.tensor(ref.uid, dtype=torch.long)
                if not self.fixed:
                    out["_cursor"] = torch.tensor([worker, w, i + 1], dtype=torch.long)
                yield out
            del held, loaded
            self.held_shards, self.held_bytes = 0, 0
