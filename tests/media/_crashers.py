"""Module-level functions for the safe-mode tests, importable by the forkserver child (tests/media is on sys.path)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from avlearn.media.errors import NoAudioStream


def add(a: int, b: int) -> tuple[int, int]:
    return a + b, os.getpid()


def sleep_forever(pid_file: str) -> None:
    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(3600)


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def allocate_mb(mb: int) -> int:
    block = np.ones(mb * 1024 * 1024, np.uint8)
    return int(block.sum())


def raise_no_audio(path: str) -> None:
    raise NoAudioStream(path, "no audio here")


def raise_value_error() -> None:
    raise ValueError("a bug in a decoder")
