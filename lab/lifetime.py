"""Processes that die with their owner: PR_SET_PDEATHSIG, set in the child.

Contract: `popen(argv, die_signal=SIGKILL, preexec=None, **kwargs)` is
`subprocess.Popen(argv, **kwargs)` whose child receives `die_signal` when the
lab process that started it dies, however it dies (SIGKILL included). The
kernel sends the parent-death signal when the *thread* that forked the child
exits, not the process, so a child is forked by the calling thread only when
that is the main thread; any other thread (a runner lane, a pool thread)
hands the fork to one long-lived daemon thread, the spawner, which lives as
long as the process. Exec keeps the setting (unless the binary is set-uid or
has file capabilities); a change of credentials clears it, so the hook runs
*after* `preexec` (postgres's demotion to its own user). If the parent died
between fork and the hook, the child signals itself. `die_with_parent(sig)`
sets it on the calling process (the runner under nox). Linux only: elsewhere
both are plain (the owner sweep remains the safety net). Errors: whatever
Popen raises, re-raised in the calling thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any, Callable

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _prctl = _libc["prctl"]  # resolved now: the hook runs between fork and exec
        _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        _prctl.restype = ctypes.c_int
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        _libc = None


def supported() -> bool:
    """True where the parent-death signal can be set (Linux with libc's prctl)."""
    return _libc is not None


def _set_pdeathsig(sig: int) -> bool:
    return _libc is not None and _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def get_pdeathsig() -> int:
    """The calling process's parent-death signal (0: none)."""
    if _libc is None:
        return 0
    value = ctypes.c_int(0)
    _libc["prctl"](PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return value.value


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits;
    returns False where unsupported. Sends it at once if the parent is gone."""
    parent = os.getppid()
    if not _set_pdeathsig(sig):
        return False
    if parent == 1 or os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def pdeathsig_hook(sig: int, before: Callable[[], None] | None = None) -> Callable[[], None]:
    """A preexec_fn: run `before` (e.g. setuid), then set the parent-death signal."""
    parent = os.getpid()  # the forking process; the child's getppid() until it dies

    def hook() -> None:
        if before is not None:
            before()
        if _set_pdeathsig(sig) and os.getppid() != parent:
            os.kill(os.getpid(), sig)
    return hook


class _Spawner:
    """One daemon thread that forks for every non-main thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, func: Callable[[], Any]) -> Any:
        if threading.current_thread() is threading.main_thread():
            return func()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="lab-spawner", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._jobs.put((func, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            func, future = self._jobs.get()
            try:
                future.set_result(func())
            except BaseException as exc:  # handed back to the caller
                future.set_exception(exc)


SPAWNER = _Spawner()


def popen(argv: list[str], die_signal: int = signal.SIGKILL,
          preexec: Callable[[], None] | None = None, **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen(argv, **kwargs) whose child dies (`die_signal`) with this process."""
    hook = pdeathsig_hook(die_signal, preexec) if supported() else preexec
    return SPAWNER.call(lambda: subprocess.Popen(argv, preexec_fn=hook, **kwargs))
