"""Dynamic batching on the event loop: concurrent submissions with the same key become one call.

How a batch forms (the rule of Triton's dynamic batcher and TorchServe's ``batch_size`` /
``max_batch_delay``): items wait in arrival order, one queue per key; when a slot is free, the
key whose oldest item came first sends up to ``max_batch`` items at once, as soon as
``max_batch`` of them wait or the oldest has waited ``max_delay_sec``. While every slot is busy
new items keep gathering, so under load batches fill without any added delay.

The batch function runs on an executor thread and returns one result (or one exception) per
item, in order. When it raises for the whole batch, each item is run again on its own, so one
bad input fails only its own call. Everything but the batch function runs on the loop thread:
no locks. A submitter that is cancelled (its client left, its deadline passed) leaves its item
behind; the item is skipped when its batch forms.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BatchFn = Callable[[Any, list[Any]], Sequence[Any]]  # (key, payloads) -> one result or exception per payload
OnBatch = Callable[[str, int, bool], None]  # (batcher name, batch size, split into single runs)


@dataclass(eq=False)
class _Item:
    payload: Any
    future: asyncio.Future
    t0: float  # loop.time() at submission


@dataclass(eq=False)
class _KeyQueue:
    key: Hashable
    items: deque[_Item] = field(default_factory=deque)

    def head(self) -> _Item | None:
        """The oldest item still wanted (cancelled submitters are dropped)."""
        while self.items and self.items[0].future.done():
            self.items.popleft()
        return self.items[0] if self.items else None


class Slots:
    """How many batches may run at once; one pool can be shared by several batchers (all model
    passes share the cores). A freed slot goes to the batcher whose oldest item came first."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"slots must be >= 1, got {count}")
        self.count = int(count)
        self.free = int(count)
        self._waiting: list[Batcher] = []

    def take(self, batcher: Batcher) -> bool:
        if self.free > 0:
            self.free -= 1
            return True
        if batcher not in self._waiting:
            self._waiting.append(batcher)
        return False

    def give_back(self) -> None:
        self.free += 1
        waiting, self._waiting = self._waiting, []
        for b in sorted(waiting, key=lambda b: b.oldest_t0()):
            b.pump()


class Batcher:
    """Gathers concurrent ``submit(key, payload)`` calls into calls of ``run(key, payloads)``.

    Args:
        name: for metrics and logs ("image", "audio", "localize", "search").
        run: the batch function (blocking; runs on ``executor``).
        executor: where batches run; None = on the loop thread itself, once per loop iteration
            (for batch functions of well under a millisecond, where a thread hand-off would cost
            more than the work: every item submitted in the same iteration shares the call).
        slots: batches at once (shared with other batchers or not).
        max_batch: items per batch at most.
        max_delay_sec: how long a lone item may wait for company while a slot is free (0 = never).
        on_batch: called on the loop thread after each batch (metrics).
    """

    def __init__(
        self, name: str, run: BatchFn, *, executor: Executor | None, slots: Slots, max_batch: int, max_delay_sec: float = 0.0, on_batch: OnBatch | None = None,
    ) -> None:  # fmt: skip
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_delay_sec < 0:
            raise ValueError(f"max_delay_sec must be >= 0, got {max_delay_sec}")
        self.name = name
        self.run = run
        self.executor = executor
        self.slots = slots
        self.max_batch = int(max_batch)
        self.max_delay_sec = float(max_delay_sec)
        self.on_batch = on_batch
        self._queues: dict[Hashable, _KeyQueue] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inline_due = False

    # -- submitting ---------------------------------------------------------------------------
    async def submit(self, key: Hashable, payload: Any) -> Any:
        """The result of ``payload`` in a batch of its ``key`` (or its exception, raised here)."""
        loop = self._loop = self._loop or asyncio.get_running_loop()
        fut = loop.create_future()
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _KeyQueue(key)
        q.items.append(_Item(payload, fut, loop.time()))
        self.pump()
        return await fut

    def waiting(self) -> int:
        """Items queued and not yet in a batch."""
        return sum(sum(not it.future.done() for it in q.items) for q in self._queues.values())

    # -- forming batches ------------------------------------------------------------------------
    def _oldest(self) -> _KeyQueue | None:
        best, best_t = None, 0.0
        for key in list(self._queues):
            q = self._queues[key]
            head = q.head()
            if head is None:
                del self._queues[key]
            elif best is None or head.t0 < best_t:
                best, best_t = q, head.t0
        return best

    def oldest_t0(self) -> float:
        q = self._oldest()
        head = q.head() if q is not None else None
        return head.t0 if head is not None else float("inf")

    def pump(self) -> None:
        """Send out every batch that is ready and has a slot (loop thread only)."""
        loop = self._loop
        if loop is None:
            return
        if self.executor is None:  # once per loop iteration, with every item submitted in it
            if not self._inline_due and self._queues:
                self._inline_due = True
                loop.call_soon(self._run_inline)
            return
        while True:
            q = self._oldest()
            if q is None:
                return
            head = q.head()
            assert head is not None
            due = head.t0 + self.max_delay_sec
            if len(q.items) < self.max_batch and loop.time() < due:
                if self._timer is None or self._timer.when() > due:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer = loop.call_at(due, self._on_timer)
                return
            if not self.slots.take(self):
                return
            batch: list[_Item] = []
            while q.items and len(batch) < self.max_batch:
                it = q.items.popleft()
                if not it.future.done():
                    batch.append(it)
            if not batch:
                self.slots.give_back()
                continue
            self._dispatch(q.key, batch)

    def _on_timer(self) -> None:
        self._timer = None
        self.pump()

    def _dispatch(self, key: Hashable, batch: list[_Item]) -> None:
        assert self._loop is not None
        payloads = [it.payload for it in batch]
        fut = self._loop.run_in_executor(self.executor, self._run_isolated, key, payloads)
        fut.add_done_callback(lambda f: self._finish(batch, f))

    def _run_inline(self) -> None:
        """Every queued item, in batches of at most max_batch per key, right here on the loop thread."""
        self._inline_due = False
        for key in list(self._queues):
            q = self._queues.pop(key)
            while q.items:
                batch: list[_Item] = []
                while q.items and len(batch) < self.max_batch:
                    it = q.items.popleft()
                    if not it.future.done():
                        batch.append(it)
                if batch:
                    results, split = self._run_isolated(key, [it.payload for it in batch])
                    self._deliver(batch, results, split)

    def _run_isolated(self, key: Hashable, payloads: list[Any]) -> tuple[list[Any], bool]:
        """(one result or exception per payload, whether the batch was split into single runs)."""
        try:
            out = list(self.run(key, payloads))
            if len(out) != len(payloads):
                raise RuntimeError(f"{self.name} batch function returned {len(out)} results for {len(payloads)} items")
            return out, False
        except Exception as exc:
            if len(payloads) == 1:
                return [exc], False
        return [self._run_one(key, p) for p in payloads], True

    def _run_one(self, key: Hashable, payload: Any) -> Any:
        try:
            return list(self.run(key, [payload]))[0]
        except Exception as exc:
            return exc

    def _finish(self, batch: list[_Item], done: asyncio.Future) -> None:
        results: list[Any]
        split = False
        if done.cancelled():
            results = [RuntimeError(f"the {self.name} batch was cancelled (server shutting down)")] * len(batch)
        elif done.exception() is not None:
            results = [done.exception()] * len(batch)
        else:
            results, split = done.result()
        self._deliver(batch, results, split)
        self.slots.give_back()
        self.pump()

    def _deliver(self, batch: list[_Item], results: Sequence[Any], split: bool) -> None:
        for it, res in zip(batch, results):
            if it.future.done():
                continue
            if isinstance(res, BaseException):
                it.future.set_exception(res)
            else:
                it.future.set_result(res)
        if self.on_batch is not None:
            try:
                self.on_batch(self.name, len(batch), split)
            except Exception:  # metrics must never break serving
                log.exception("on_batch failed")
