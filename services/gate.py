"""Admission to the model: a bounded number of forward passes at once, first come first served."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from services.errors import Check, no_check


class ComputeGate:
    """At most ``slots`` model forward passes at once; the other queries wait their turn, first come first served.

    Without it, N concurrent queries all share the cores at once (and the GIL between their
    torch calls): every query stretches and some starve. A waiter keeps its place in the queue
    while it polls ``check`` (its deadline, a client that left) every 50 ms; a slot that is
    released goes to the oldest waiter.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"compute slots must be >= 1, got {slots}")
        self.slots = int(slots)
        self._free = self.slots
        self._queue: deque[threading.Event] = deque()
        self._lock = threading.Lock()

    def _release_locked(self) -> None:
        if self._queue:
            self._queue.popleft().set()  # the slot passes straight to the oldest waiter
        else:
            self._free += 1

    @contextmanager
    def __call__(self, check: Check = no_check) -> Iterator[None]:
        with self._lock:
            ticket = None
            if self._free > 0 and not self._queue:
                self._free -= 1
            else:
                ticket = threading.Event()
                self._queue.append(ticket)
        if ticket is not None:
            try:
                while not ticket.wait(0.05):
                    check("queued")
            except BaseException:
                with self._lock:
                    if ticket.is_set():  # the slot arrived as we gave up: pass it on
                        self._release_locked()
                    else:
                        self._queue.remove(ticket)
                raise
        try:
            yield
        finally:
            with self._lock:
                self._release_locked()


def default_compute_slots() -> int:
    """Cores / torch threads per forward pass (>= 1): enough passes at once to keep every core busy."""
    import torch

    return max(1, (os.cpu_count() or 1) // max(1, torch.get_num_threads()))
