"""ComputeGate: model forward passes are bounded; queued queries still honour deadlines."""

from __future__ import annotations

import threading
import time

import pytest

from services.errors import Abandoned
from services.gate import ComputeGate


def test_gate_bounds_concurrent_passes() -> None:
    gate = ComputeGate(2)
    lock = threading.Lock()
    inside, peak = [0], [0]

    def work() -> None:
        with gate():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2 and inside[0] == 0


def test_waiters_enter_in_arrival_order() -> None:
    """First come, first served, although every waiter re-polls its deadline every 50 ms meanwhile."""
    gate = ComputeGate(1)
    order: list[int] = []

    def work(i: int) -> None:
        with gate():
            order.append(i)
            time.sleep(0.08)

    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
        time.sleep(0.01)  # arrival order 0, 1, 2, ...
    for t in threads:
        t.join()
    assert order == list(range(6))


def test_a_waiting_query_leaves_when_abandoned() -> None:
    gate = ComputeGate(1)
    stages = []

    def check(stage: str) -> None:
        stages.append(stage)
        if len(stages) >= 3:
            raise Abandoned(stage, "deadline exceeded")

    with gate():  # the only slot is taken
        with pytest.raises(Abandoned):
            with gate(check):
                pytest.fail("entered a full gate")
    assert stages == ["queued"] * 3
    with gate(check):  # the slot was released and nothing leaked
        pass
    with pytest.raises(ValueError):
        ComputeGate(0)
