"""Safe mode: decode untrusted files in a child process with a time limit and a memory cap.

A decoder crash (segfault), hang or runaway allocation in the child becomes a typed
MediaError in the caller (``CorruptMedia``, ``DecodeTimeout``, ``MediaTooLarge``),
never a dead job. Children are forked from a forkserver that has imported only
the media stack (no torch), so the memory cap measures the decoder's own use.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import traceback
from collections.abc import Callable
from typing import Any

from avlearn.media.errors import CorruptMedia, DecodeTimeout, MediaError, MediaTooLarge

DEFAULT_TIMEOUT_SEC = 120.0
DEFAULT_MEMORY_MB = 4096

_ctx: mp.context.BaseContext | None = None


def _context() -> mp.context.BaseContext:
    global _ctx
    if _ctx is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["avlearn.media.segments"])
        _ctx = ctx
    return _ctx


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent (the forkserver) exits.

    The forkserver exits once the process that started it is gone (even by ``kill -9``) and no
    child holds its "alive" pipe: each child inherits that pipe (to fork further children, which a
    decoder never does), so it is closed here; then a decoder child never outlives the command that
    asked for it (no orphan decoding on, no BrokenPipeError traceback when it tries to answer).
    The death signal is Linux only; elsewhere only the pipe is closed.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive_fd, int):
        try:
            os.close(alive_fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if parent == 1 or os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _child(conn, fn: Callable[..., Any], args: tuple, kwargs: dict, memory_mb: int, path: str) -> None:
    _die_with_parent()
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = ("ok", fn(*args, **kwargs))
    except MediaError as exc:
        result = ("err", exc)
    except MemoryError:
        result = ("err", MediaTooLarge(path, f"decoding needed more than the {memory_mb} MiB memory cap"))
    except Exception as exc:  # any other decoder failure is a property of the file
        result = ("err", CorruptMedia(path, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
    try:
        try:
            conn.send(result)
        except MemoryError:
            conn.send(("err", MediaTooLarge(path, f"result exceeded the {memory_mb} MiB memory cap")))
    except OSError:  # the caller is gone (killed, or gave up at its time limit): nobody to answer
        pass
    finally:
        conn.close()


def safe_call(
    fn: Callable[..., Any],
    *args: Any,
    path: str = "",
    timeout_sec: float = DEFAULT_TIMEOUT_SEC,
    memory_mb: int = DEFAULT_MEMORY_MB,
    **kwargs: Any,
) -> Any:
    """Run ``fn(*args, **kwargs)`` in a fresh child process and return its result.

    ``fn`` must be a picklable module-level function (e.g. ``read_segments``).

    Args:
        path: the file concerned, for error messages.
        timeout_sec: wall-clock limit; the child is killed past it.
        memory_mb: address-space cap for the child (0: none).

    Raises:
        DecodeTimeout: the child ran past ``timeout_sec``.
        CorruptMedia: the child died (signal or exit) or raised a non-media error.
        MediaTooLarge: the child ran out of its memory cap.
        MediaError: whatever typed error ``fn`` raised.
    """
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args, kwargs, memory_mb, path), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout_sec):
            proc.kill()
            proc.join()
            raise DecodeTimeout(path, f"decoding took longer than {timeout_sec:g} s; the worker was killed")
        try:
            status, value = recv.recv()
        except (EOFError, ConnectionError):
            proc.join()
            raise CorruptMedia(path, _death_reason(proc.exitcode)) from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if status == "err":
        raise value
    return value


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode).name
        except ValueError:
            sig = str(-exitcode)
        return f"the decoder process died with signal {sig}"
    return f"the decoder process exited with code {exitcode} without a result"


def worker_pid() -> int:
    """The current process id (used by tests to prove work ran in a child)."""
    return os.getpid()
