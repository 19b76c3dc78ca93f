"""Admission control: a bounded queue in front of the work, with per-call deadlines.

A call is admitted when it arrives and stays counted until it ends (running or waiting for the
executor or a batch). It is refused (RESOURCE_EXHAUSTED) only

- ``queue_full``: ``capacity`` calls are already admitted, or
- ``deadline``: its deadline cannot be met — already passed, or shorter than the fastest this
  method was served among its last completions (a lower bound on what it can take now).

Everything runs on the event loop thread: no locks.
"""

from __future__ import annotations

import os
from collections import deque

QUEUE_FULL, DEADLINE = "queue_full", "deadline"
_RECENT = 64  # completions per method kept for the fastest-service estimate
_MIN_SAMPLES = 8  # no deadline refusals before this many completions of the method


class Admission:
    """At most ``capacity`` calls admitted at once; see the module docstring for the refusals."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the admission queue needs capacity >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.admitted = 0
        self._recent: dict[str, deque[float]] = {}
        self._fastest: dict[str, float] = {}  # min of _recent[method], kept up to date in done()

    def fastest_sec(self, method: str) -> float | None:
        """The shortest of the method's recent OK service times (None until enough are known)."""
        recent = self._recent.get(method)
        if recent is None or len(recent) < _MIN_SAMPLES:
            return None
        return self._fastest[method]

    def admit(self, method: str, remaining_sec: float | None) -> str | None:
        """Admit the call (None) or say why not (``QUEUE_FULL`` / ``DEADLINE``); admitted calls must call ``done``."""
        if self.admitted >= self.capacity:
            return QUEUE_FULL
        if remaining_sec is not None:
            fastest = self.fastest_sec(method)
            if remaining_sec <= 0 or (fastest is not None and remaining_sec < fastest):
                return DEADLINE
        self.admitted += 1
        return None

    def done(self, method: str, elapsed_sec: float, ok: bool) -> None:
        """An admitted call ended after ``elapsed_sec``; OK ones feed the service-time estimate."""
        self.admitted -= 1
        if ok:
            recent = self._recent.get(method)
            if recent is None:
                recent = self._recent[method] = deque(maxlen=_RECENT)
            dropped = recent[0] if len(recent) == _RECENT else None
            recent.append(elapsed_sec)
            fastest = self._fastest.get(method)
            if fastest is None or elapsed_sec <= fastest:
                self._fastest[method] = elapsed_sec
            elif dropped is not None and dropped <= fastest:
                self._fastest[method] = min(recent)


def default_compute_slots() -> int:
    """Cores / torch threads per forward pass (>= 1): enough passes at once to keep every core busy."""
    import torch

    return max(1, (os.cpu_count() or 1) // max(1, torch.get_num_threads()))


def default_workers() -> int:
    """Executor threads for decoding, searches and post-processing: one per core, at least 2."""
    return max(2, os.cpu_count() or 1)
