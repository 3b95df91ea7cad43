"""Ownership of everything the lab starts: processes, temp dirs, services.

Contract: every process the lab spawns carries the environment variable
LAB_OWNER=<token> (tokens nest as run/cell) (inherited by its children, forked pool children included),
so `find_owned(token)` lists it even after its parent died. `Reaper` runs
registered cleanups last-in-first-out exactly once: on normal exit, on
Ctrl-C (KeyboardInterrupt unwinds through `with Reaper()`), on SIGTERM/SIGHUP
(turned into SystemExit) and at interpreter exit. `kill_owned` is the last
line of defence and is what tests assert on.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

OWNER_ENV = "LAB_OWNER"


def owner_token() -> str:
    """The token for this process tree: inherited if set, else new."""
    token = os.environ.get(OWNER_ENV)
    if not token:
        token = f"lab-{os.getpid()}-{int(time.time())}"
        os.environ[OWNER_ENV] = token
    return token


def owns(token: str, value: str | None) -> bool:
    """Tokens nest: "run/cell" is owned by "run" (a run sweep finds its cells)."""
    return bool(value) and (value == token or value.startswith(token + "/"))


def child_token(parent: str, name: str) -> str:
    return f"{parent}/{name}"


def find_owned(token: str) -> list[psutil.Process]:
    """Processes (other than this one and its ancestors) owned by `token`."""
    me = os.getpid()
    skip = {me} | {p.pid for p in psutil.Process(me).parents()}
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in skip:
            continue
        try:
            if owns(token, proc.environ().get(OWNER_ENV)) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def kill_tree(procs: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGKILL the given processes; return those still alive after `timeout`."""
    for proc in procs:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive


def kill_owned(token: str, timeout: float = 5.0) -> list[psutil.Process]:
    return kill_tree(find_owned(token), timeout)


class Reaper:
    """LIFO registry of cleanups; use as a context manager around a run."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self._installed = False

    def add(self, label: str, func: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._cleanups.append((label, func))
        return func

    def discard(self, func: Callable[[], None]) -> None:
        with self._lock:
            self._cleanups = [(l, f) for l, f in self._cleanups if f is not func]

    def temp_dir(self, path: Path, keep: bool = False) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if not keep:
            self.add(f"rm {path}", lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def run_all(self) -> list[str]:
        errors = []
        while True:
            with self._lock:
                if not self._cleanups:
                    break
                label, func = self._cleanups.pop()
            try:
                func()
            except Exception as exc:  # cleanup must go on
                errors.append(f"{label}: {exc!r}")
        return errors

    def install(self) -> "Reaper":
        if self._installed or threading.current_thread() is not threading.main_thread():
            return self
        atexit.register(self.run_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_system_exit)
        self._installed = True
        return self

    def __enter__(self) -> "Reaper":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.run_all()


def _raise_system_exit(signum, frame):  # pragma: no cover - exercised by e2e
    raise SystemExit(128 + signum)


REAPER = Reaper()


def find_all_owned() -> list[psutil.Process]:
    """Every process carrying any LAB_OWNER (for `lab cleanup`)."""
    me = os.getpid()
    skip = {me} | {p.pid for p in psutil.Process(me).parents()}
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid not in skip and proc.environ().get(OWNER_ENV):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found
