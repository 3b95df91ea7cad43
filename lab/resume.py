"""One runner per (run dir, dependency set or Celery version), a clean start on
resume, and the exact command that resumes a run.

Contract: `claim(run_dir, key)` (key: the set key, else the Celery version)
takes an exclusive flock on <run-dir>/runners/<key>.lock (the kernel drops it when the runner dies,
SIGKILL included; RunnerBusy names the holder while one lives), reads the
previous runner's state from <key>.json (pid, start time, token,
generation), SIGKILLs every process that token still owns (not this process
or its ancestors), removes its temp dirs, and records this runner as
generation + 1. The generation goes into every cell's namespace, so a cell
rerun after a crash gets new queue names, SQLite files, databases and vhosts.
`Claim.release()` drops the lock (the state file stays for the next resume).
`resume_command(run_dir)` is the command that runs every unfinished cell of
the run and rebuilds its report.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lab.reaper import find_owned, kill_tree, owner_token, remove_stale_temp_dirs

REPO = Path(__file__).resolve().parents[1]


class RunnerBusy(RuntimeError):
    """Another live runner holds this run dir and Celery version."""


@dataclass
class Claim:
    run_dir: Path
    celery: str
    generation: int
    fd: int
    swept: list[str] = field(default_factory=list)   # leftovers of the previous runner, killed

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def _paths(run_dir: Path, celery: str) -> tuple[Path, Path]:
    folder = Path(run_dir) / "runners"
    name = (celery or "all").replace("/", "_")
    return folder / f"{name}.lock", folder / f"{name}.json"


def claim(run_dir: Path, celery: str | None) -> Claim:
    """Take the run dir for this Celery version; raises RunnerBusy if a live runner has it."""
    lock_path, state_path = _paths(run_dir, celery or "all")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _read(state_path)
        raise RunnerBusy(f"{run_dir}: celery {celery} is being run by pid {holder.get('pid', '?')}; "
                         "stop it (Ctrl-C) or wait for it") from None
    previous = _read(state_path)
    swept = []
    if previous.get("token"):
        # the previous runner of this run dir and version is dead (we hold its lock): stop what it left
        leftovers = find_owned(previous["token"])
        for proc in leftovers:
            try:
                swept.append(f"pid {proc.pid} {' '.join(proc.cmdline()[:4])}")
            except psutil.Error:
                swept.append(f"pid {proc.pid}")
        kill_tree(leftovers)
        remove_stale_temp_dirs(token=previous["token"])
    generation = int(previous.get("generation", 0)) + 1
    me = psutil.Process()
    state = {"pid": me.pid, "start": me.create_time(), "token": owner_token(),
             "generation": generation, "celery": celery}
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, state_path)
    return Claim(Path(run_dir), celery or "all", generation, fd, swept)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def resume_command(run_dir: Path) -> str:
    """`nox -s matrix -- --resume RUN_DIR` (prefixed with a cd to the checkout when needed)."""
    command = f"nox -s matrix -- --resume {shlex.quote(str(Path(run_dir).resolve()))}"
    if Path.cwd().resolve() != REPO:
        command = f"cd {shlex.quote(str(REPO))} && {command}"
    return command
