"""Plumbing shared by the synthetic worlds: seeded random streams, splits by video, the worker pool, CSV files."""

from __future__ import annotations

import csv
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

_STATE: Any = None


def seeded_rng(*key: int) -> np.random.Generator:
    """A generator that is a function of ``key`` only (e.g. (seed, stream, index))."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def split_order(order: np.ndarray, eval_names: Sequence[str]) -> dict[str, list[int]]:
    """Video indices in a random ``order`` -> splits: the first ~10 % each to ``eval_names`` in turn (>= 1 each
    once there are more videos than eval splits; none below), the rest to "train". Sorted index lists by name."""
    n = len(order)
    n_eval = max(1, int(round(0.1 * n))) if n > len(eval_names) else 0
    out = {name: sorted(int(i) for i in order[k * n_eval : (k + 1) * n_eval]) for k, name in enumerate(eval_names)}
    out["train"] = sorted(int(i) for i in order[len(eval_names) * n_eval :])
    return out


def _init_worker(state: Any) -> None:
    global _STATE
    _STATE = state


def _call(fn: Callable[[Any, Any], dict], task: Any) -> dict:
    return fn(_STATE, task)


def run_tasks(fn: Callable[[Any, Any], dict], tasks: list, state: Any, workers: int, *, desc: str, progress: bool) -> list[dict]:
    """``[fn(state, task) for task in tasks]``, in this process (``workers`` <= 1) or a forkserver pool that
    receives ``state`` once per worker; results in task order. ``fn`` must be a module-level function."""
    from tqdm.auto import tqdm

    with tqdm(total=len(tasks), desc=desc, unit="clip", disable=not progress) as bar:
        if workers <= 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(fn(state, task))
                bar.update(1)
            return results
        ctx = multiprocessing.get_context("forkserver")
        out: dict[int, dict] = {}
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(state,)) as pool:
            futures = {pool.submit(_call, fn, task): k for k, task in enumerate(tasks)}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
                bar.update(1)
        return [out[k] for k in range(len(tasks))]


def write_csv(path: Path, rows: list[dict], columns: Sequence[str], prefix: str = "") -> None:
    """One row per dict: ``path`` (prefixed), list values ';'-joined."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            values = [";".join(r[c]) if isinstance(r[c], list) else r[c] for c in columns]
            values[columns.index("path")] = prefix + values[columns.index("path")]
            w.writerow(values)
