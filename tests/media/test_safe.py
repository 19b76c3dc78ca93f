"""Safe mode: decoding in a forkserver child with a time limit and a memory cap."""

from __future__ import annotations

import os
import time

import _crashers
import numpy as np
import pytest

from avlearn.media import CorruptMedia, DecodeTimeout, MediaTooLarge, NoAudioStream, read_frames, safe_call


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): look at its state
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_safe_call_returns_the_childs_result():
    total, pid = safe_call(_crashers.add, 2, 3)
    assert total == 5 and pid != os.getpid()


def test_safe_call_decodes(tone_video):
    frames = safe_call(read_frames, tone_video, [0.5, 1.0], path=str(tone_video))
    direct = read_frames(tone_video, [0.5, 1.0])
    np.testing.assert_array_equal(frames.images, direct.images)


def test_hang_becomes_decode_timeout_and_the_child_is_gone(tmp_path):
    pid_file = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(DecodeTimeout, match="longer than 1 s") as info:
        safe_call(_crashers.sleep_forever, str(pid_file), path="slow.mp4", timeout_sec=1.0)
    assert time.monotonic() - t0 < 10
    assert info.value.path == "slow.mp4"
    pid = int(pid_file.read_text())
    assert pid != os.getpid() and not _alive(pid)


def test_segfault_becomes_corrupt_media():
    with pytest.raises(CorruptMedia, match="SIGSEGV"):
        safe_call(_crashers.segfault, path="crash.mp4")


def test_memory_cap_becomes_media_too_large():
    with pytest.raises(MediaTooLarge, match="memory"):
        safe_call(_crashers.allocate_mb, 2048, memory_mb=1024)
    assert safe_call(_crashers.allocate_mb, 8, memory_mb=1024) == 8 * 1024 * 1024


def test_typed_errors_come_back_typed():
    with pytest.raises(NoAudioStream, match="no audio here") as info:
        safe_call(_crashers.raise_no_audio, "x.mp4")
    assert info.value.path == "x.mp4"
    with pytest.raises(CorruptMedia, match="ValueError"):
        safe_call(_crashers.raise_value_error)


def test_decoder_children_die_with_their_parent(tmp_path):
    """kill -9 of the process that asked for a decode: its decoder child goes too (no orphan, no BrokenPipeError)."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    pid_file = tmp_path / "pid"
    here = Path(__file__).resolve().parent
    code = f"import _crashers; from avlearn.media import safe_call; safe_call(_crashers.sleep_forever, {str(pid_file)!r}, timeout_sec=600)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), *sys.path])}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the decoder child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert "Traceback" not in parent.stderr.read()
