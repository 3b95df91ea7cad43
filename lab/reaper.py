"""Ownership of everything the lab starts: processes, temp dirs, services.

Contract: every process the lab spawns carries the environment variable
LAB_OWNER=<token> (tokens nest as run/cell) (inherited by its children, forked pool children included),
so `find_owned(token)` lists it even after its parent died. LAB_SCOPE=<reports
dir> says which reports dir (hence checkout) a process belongs to, so
`find_in_scope(scope)` is what `lab cleanup` touches by default. Temp dirs made
with `owned_temp_dir` hold an owner.json (pid, start time, token, scope);
`stale_temp_dirs()` lists those whose owner process is gone (SIGKILL
included) and `remove_stale_temp_dirs()` removes them. `Reaper` runs
registered cleanups last-in-first-out exactly once: on normal exit, on
Ctrl-C (KeyboardInterrupt unwinds through `with Reaper()`), on SIGTERM/SIGHUP
(turned into SystemExit) and at interpreter exit. `kill_owned` is the last
line of defence and is what tests assert on.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

OWNER_ENV = "LAB_OWNER"
SCOPE_ENV = "LAB_SCOPE"
TEMP_PREFIXES = ("lab-services-", "lab-pg-")
OWNER_FILE = "owner.json"


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
    """Live processes (other than this one and its ancestors) owned by `token`."""
    return _find(lambda env: owns(token, env.get(OWNER_ENV)))


def kill_tree(procs: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGKILL the given processes; return those still alive after `timeout`."""
    for proc in procs:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        alive = [p for p in alive if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a zombie only waits for its parent to reap it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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


def _find(match: Callable[[dict], bool]) -> list[psutil.Process]:
    me = os.getpid()
    skip = {me} | {p.pid for p in psutil.Process(me).parents()}
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in skip:
            continue
        try:
            env = proc.environ()
            if env.get(OWNER_ENV) and match(env) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def find_all_owned() -> list[psutil.Process]:
    """Every live process on the machine carrying any LAB_OWNER (`lab cleanup --all`)."""
    return _find(lambda env: True)


def find_in_scope(scope: str) -> list[psutil.Process]:
    """Live lab processes whose LAB_SCOPE is `scope` (a resolved reports dir)."""
    return _find(lambda env: env.get(SCOPE_ENV) == scope)


def ensure_scope(reports_dir: Path) -> str:
    """Set LAB_SCOPE for this process tree unless already set (tests set the checkout's)."""
    if not os.environ.get(SCOPE_ENV):
        os.environ[SCOPE_ENV] = str(Path(reports_dir).resolve())
    return os.environ[SCOPE_ENV]


# -- temp dirs that name their owner ---------------------------------------
def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def write_owner(path: Path, pid: int | None = None) -> None:
    """Record in `path`/owner.json which process owns the directory."""
    pid = pid or os.getpid()
    data = {"pid": pid, "start": _start_time(pid), "token": os.environ.get(OWNER_ENV, ""),
            "scope": os.environ.get(SCOPE_ENV, "")}
    (Path(path) / OWNER_FILE).write_text(json.dumps(data))


def owned_temp_dir(prefix: str = "lab-services-", mode: int = 0o711) -> Path:
    """A new dir in the system temp folder with an owner.json; `mode` 0711 lets a
    demoted server (postgres) reach subdirectories without listing this one."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, mode)
    write_owner(path)
    return path


def owner_alive(info: dict) -> bool:
    start = _start_time(int(info.get("pid", 0) or 0))
    return start is not None and (info.get("start") is None or abs(start - info["start"]) < 1.0)


def stale_temp_dirs(scope: str | None = None, root: Path | None = None,
                    token: str | None = None) -> list[Path]:
    """Lab temp dirs in `root` (default: the system temp dir) whose owner process
    is gone, optionally only those of one scope or owned by `token`. A dir
    without an owner.json (made by an older lab, or not ours) is never listed."""
    root = Path(root or tempfile.gettempdir())
    found = []
    for prefix in TEMP_PREFIXES:
        for path in sorted(root.glob(prefix + "*")):
            try:
                info = json.loads((path / OWNER_FILE).read_text())
            except (OSError, ValueError):
                continue
            if scope is not None and info.get("scope") != scope:
                continue
            if token is not None and not owns(token, info.get("token")):
                continue
            if not owner_alive(info):
                found.append(path)
    return found


def remove_stale_temp_dirs(scope: str | None = None, root: Path | None = None,
                           token: str | None = None) -> list[Path]:
    """Remove what `stale_temp_dirs` lists; returns the paths removed."""
    removed = []
    for path in stale_temp_dirs(scope, root, token):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed
