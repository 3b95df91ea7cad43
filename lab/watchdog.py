"""The runner's watchdog: what the kernel's parent-death signal cannot reach.

Contract: `Watchdog.start(token, hint)` spawns `python -m lab.watchdog TOKEN`
in a session of its own (a signal to the runner's process group misses it)
with a pipe on its stdin whose write end only the runner holds. `disarm()`
(a normal end) writes "done" and waits for it to exit. If the runner dies
any other way, SIGKILL included, the kernel closes the pipe; the watchdog
then SIGKILLs every process `TOKEN` still owns (forked pool children, a
server that changed user, anything a dead cell left), removes the lab temp
dirs `TOKEN` owned whose owner process is gone (until they stay removed), and
prints what it did and `hint` (the exact resume command) on the runner's
stdout. Bounded: sweep and removal repeat for at most SWEEP_S seconds. Exit
status 0 after a sweep that left nothing (no process, no dir), 1 otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.reaper import find_owned, kill_tree, stale_temp_dirs

SWEEP_S = 20.0
DONE = b"done\n"


class Watchdog:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, token: str, hint: str = "") -> "Watchdog":
        """Spawn the watchdog for this process; raises OSError if it cannot start."""
        proc = subprocess.Popen([sys.executable, "-m", "lab.watchdog", token, hint],
                                stdin=subprocess.PIPE, start_new_session=True)
        return cls(proc)

    def disarm(self, timeout: float = 10.0) -> None:
        """A normal end: tell the watchdog not to sweep, and reap it."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(DONE)
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def sweep(token: str, bound: float = SWEEP_S) -> tuple[int, list]:
    """SIGKILL what `token` owns until nothing is left or `bound` s passed;
    returns (processes killed, survivors)."""
    killed, deadline = 0, time.monotonic() + bound
    while True:
        found = find_owned(token)
        if not found:
            return killed, []
        killed += len(found)
        survivors = kill_tree(found, timeout=2.0)
        if time.monotonic() >= deadline:
            return killed, survivors
        time.sleep(0.2)  # a process that was forking when we looked: look again


def remove_dirs(token: str, deadline: float) -> tuple[list[Path], list[Path]]:
    """Remove the lab temp dirs `token` owned whose owner is gone; returns (removed, left).

    A dir is removed until it stays removed: a process that escaped the first sweep (its
    environment was unreadable while it exec'd) may still write into it, or recreate it
    without its owner.json (then no later sweep would know it). So the dirs listed at
    the start are watched, sweeping again between tries, until `deadline` (monotonic s)."""
    listed = stale_temp_dirs(token=token)
    removed: list[Path] = []
    while True:
        for path in listed:
            shutil.rmtree(path, ignore_errors=True)
        time.sleep(0.2)  # a writer that was mid-way shows up now
        left = [p for p in listed if p.exists()]
        removed = [p for p in listed if p not in left]
        if not left or time.monotonic() >= deadline:
            return removed, left
        kill_tree(find_owned(token), timeout=1.0)


def main(argv: list[str]) -> int:
    token, hint = argv[0], (argv[1] if len(argv) > 1 else "")
    data = sys.stdin.buffer.read()  # returns at EOF: the runner ended, one way or another
    if data == DONE:
        return 0
    deadline = time.monotonic() + SWEEP_S
    killed, survivors = sweep(token, SWEEP_S)
    removed, left = remove_dirs(token, deadline)
    print(f"lab watchdog: the runner died; killed {killed} leftover process(es), "
          f"removed {len(removed)} temp dir(s)" + (f"; {len(survivors)} survived" if survivors else "")
          + (f"; could not remove {', '.join(map(str, left))}" if left else ""), flush=True)
    if hint:
        print(f"resume: {hint}", flush=True)
    return 1 if survivors or left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
