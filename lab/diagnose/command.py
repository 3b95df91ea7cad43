"""`lab diagnose -- <worker command>`: run a user's own worker and classify its start.

Contract: `diagnose_command(argv)` runs a user's own command in a session of
its own, with default signal dispositions (as a container runtime starts it: a
SIG_IGN inherited from a shell's `&` or nohup would hide early signals),
with the output captured (bounded: head and tail kept) and every descendant
tracked (this process becomes a child subreaper, so backgrounded or
--detach'ed workers stay visible), waits for ready / exit / the bound,
stops what is left (TERM, then KILL) and returns the facts and the class
(lab.diagnose.classify). Readiness comes from the output only (`ready.` at
INFO or `celery@... ready`) and from the process state — a user's app has no
journal. `render(facts)` is the text the CLI prints. No Celery import.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from typing import Any

import psutil

from lab.diagnose.classify import (PENDING_GRACE_S, PENDING_SHUTDOWN, READY_LINE, analyze_output,
                                   classify_start, describe_exit)

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 256 * 1024

class BoundedOutput:
    """Reads a pipe to EOF in a thread; keeps the head and the tail, counts bytes."""

    def __init__(self, stream) -> None:
        self.stream, self.head, self.tail = stream, bytearray(), bytearray()
        self.total, self.last_mono = 0, None
        self.ready_line: str | None = None
        self._partial = b""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._pump, name="diagnose-output", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        fd = self.stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                self.total += len(chunk)
                self.last_mono = time.monotonic()
                room = HEAD_BYTES - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                self.tail += chunk
                del self.tail[:-TAIL_BYTES]
                lines = (self._partial + chunk).split(b"\n")
                self._partial = lines.pop()[-4096:]
                if self.ready_line is None:
                    for line in lines:
                        found = READY_LINE.search(line.decode(errors="replace"))
                        if found:
                            self.ready_line = found.group(0)
                            break

    def text(self) -> str:
        with self.lock:
            head, tail, total = bytes(self.head), bytes(self.tail), self.total
        if total <= len(tail):
            return tail.decode(errors="replace")
        overlap = len(head) + len(tail) - total
        if overlap >= 0:
            return (head + tail[overlap:]).decode(errors="replace")
        return (head.decode(errors="replace") + f"\n[... lab diagnose: {-overlap} bytes not kept ...]\n"
                + tail.decode(errors="replace"))


RESET_SIGNALS = ("SIGINT", "SIGQUIT", "SIGHUP", "SIGTERM", "SIGUSR1", "SIGUSR2")


def ignored_signals() -> list[str]:
    """Signals this process ignores: a child would inherit SIG_IGN for them (e.g. a shell's `&`
    job ignores SIGINT and SIGQUIT, nohup ignores SIGHUP)."""
    out = []
    for name in RESET_SIGNALS:
        try:
            if signal.getsignal(getattr(signal, name)) == signal.SIG_IGN:
                out.append(name)
        except (ValueError, OSError):
            continue
    return out


def default_signals() -> None:
    """preexec_fn: start the child with default dispositions, as a container runtime does."""
    for name in RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)


# An exec shim with the same effect, for argv prefixes: python -c SHIM cmd args...
DEFAULT_SIGNALS_SHIM = ("import os, signal, sys\n"
                        f"for name in {RESET_SIGNALS!r}:\n"
                        "    signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
                        "os.execvp(sys.argv[1], sys.argv[1:])\n")


def become_subreaper() -> bool:
    """Orphaned descendants re-parent to this process (Linux prctl PR_SET_CHILD_SUBREAPER)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Tracker:
    """Every descendant seen while polling, so detached ones can be stopped too."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, float], psutil.Process] = {}

    def poll(self) -> list[psutil.Process]:
        alive = []
        try:
            kids = psutil.Process(os.getpid()).children(recursive=True)
        except psutil.Error:
            kids = []
        for proc in kids:
            try:
                key = (proc.pid, proc.create_time())
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            self.seen.setdefault(key, proc)
            alive.append(proc)
        return alive

    def alive(self, exclude: int | None = None) -> list[psutil.Process]:
        self.poll()
        out = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and proc.pid != exclude:
                    out.append(proc)
            except psutil.Error:
                continue
        return out


def _describe(procs: list[psutil.Process]) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        try:
            out.append({"pid": proc.pid, "ppid": proc.ppid(), "name": proc.name(),
                        "cmd": " ".join(proc.cmdline())[:200]})
        except psutil.Error:
            continue
    return out


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stop(proc: subprocess.Popen, tracker: Tracker, bound: float) -> dict[str, Any]:
    """TERM the command's group and every tracked descendant; KILL what is left after `bound`."""
    result: dict[str, Any] = {"stop_signal": "SIGTERM"}
    t0 = time.monotonic()
    targets = tracker.alive()
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for child in targets:
        try:
            child.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    try:
        code = proc.wait(bound)
        result["stop_exit"] = describe_exit(code, _signal_name(-code) if code < 0 else None)
        result["stop_s"] = round(time.monotonic() - t0, 2)
    except subprocess.TimeoutExpired:
        result["stop_exit"] = f"no exit within {bound:.0f}s of SIGTERM"
    psutil.wait_procs(tracker.alive(), timeout=max(0.5, bound - (time.monotonic() - t0)))
    killed = _kill_all(proc, tracker)
    result["killed_after_stop"] = killed
    return result


def _kill_all(proc: subprocess.Popen, tracker: Tracker) -> list[dict[str, Any]]:
    left = tracker.alive()
    described = _describe(left)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for child in left:
        try:
            child.kill()
        except psutil.Error:
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs(left, timeout=5)
    return described


def diagnose_command(argv: list[str], bound: float = 60.0, confirm: float = 2.0,
                     stop_bound: float = 15.0, env: dict[str, str] | None = None,
                     cwd: str | None = None) -> dict[str, Any]:
    """Run `argv`, observe its start, stop it, and return facts + classification."""
    subreaper = become_subreaper()
    inherited = ignored_signals()  # reset to default in the child (see default_signals)
    tracker = Tracker()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env, cwd=cwd, preexec_fn=default_signals)
    except OSError as exc:
        facts = {"argv": argv, "exit_code": 127, "exit_signal": None, "elapsed_s": 0.0,
                 "ready": False, "bound_s": bound, **analyze_output(f"Error: cannot run: {exc}")}
        facts["classification"] = classify_start(facts).to_dict()
        return facts
    output = BoundedOutput(proc.stdout)
    facts: dict[str, Any] = {"argv": argv, "bound_s": bound, "confirm_s": confirm,
                             "subreaper": subreaper, "pid": proc.pid,
                             "reset_inherited_ignored": inherited}
    ready_at = None
    ready = pending = False
    while True:
        tracker.poll()
        code = proc.poll()
        now = time.monotonic()
        if output.ready_line and ready_at is None:
            ready_at = now
        if ready_at is not None and code is None and now - ready_at >= confirm:
            pending = bool(PENDING_SHUTDOWN.search(output.text()))
            if not pending or now - ready_at >= confirm + PENDING_GRACE_S:
                ready = True
                break
        if code is not None or now - t0 >= bound + (PENDING_GRACE_S if pending else 0):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    facts.update({"ready": ready, "ready_seen": ready_at is not None, "shutdown_ignored": ready and pending,
                  "ready_s": round(ready_at - t0, 2) if ready_at else None,
                  "elapsed_s": round(elapsed, 2)})
    code = proc.poll()
    if ready or code is None:
        facts.update({"exit_code": None, "exit_signal": None})
        facts["last_output_age_s"] = (round(time.monotonic() - output.last_mono, 2)
                                      if output.last_mono else None)
        time.sleep(0.1)
        text = output.text()  # what the start produced, before diagnose stops it
        facts["stop"] = _stop(proc, tracker, stop_bound)
        facts["leftovers"] = []
    else:
        facts.update({"exit_code": code, "exit_signal": _signal_name(-code) if code < 0 else None})
        time.sleep(0.3)  # let orphans show
        facts["leftovers"] = _describe(tracker.alive(exclude=proc.pid))
        facts["killed_after_exit"] = _kill_all(proc, tracker)
        text = None
    output.thread.join(2.0)
    if output.thread.is_alive():  # a descendant we could not see still holds the pipe
        try:
            proc.stdout.close()
        except OSError:
            pass
    full = output.text()
    facts.update(analyze_output(full if text is None else text))
    facts["output"] = full
    facts["classification"] = classify_start(facts).to_dict()
    return facts


def render(facts: dict[str, Any], full_output: bool = False) -> str:
    c = facts["classification"]
    lines = [f"class:    {c['klass']} ({c['sub']})", f"verdict:  {c['verdict']}",
             f"summary:  {c['summary']}", "", "evidence:",
             f"  command:        {' '.join(facts.get('argv') or [])[:300]}",
             f"  exit:           {describe_exit(facts.get('exit_code'), facts.get('exit_signal'))}"
             f" after {facts.get('elapsed_s', 0):.1f}s (bound {facts.get('bound_s', 0):.0f}s)",
             f"  banner shown:   {'yes' if facts.get('banner_seen') else 'no'}"
             f"; task list: {'yes' if facts.get('tasks_seen') else 'no'}",
             f"  ready line:     {facts.get('ready_line') or '-'}",
             f"  shutdown lines: {' | '.join(facts.get('shutdown_lines') or []) or '-'}"]
    if facts.get("stop"):
        lines.append(f"  stopped by lab: {facts['stop'].get('stop_signal')} -> {facts['stop'].get('stop_exit')}")
    if facts.get("leftovers"):
        lines.append("  still running after the command exited:")
        lines += [f"    pid {p['pid']}: {p['cmd']}" for p in facts["leftovers"]]
    lines.append("  WARNING+ lines:" + ("" if facts.get("loud_lines") else " none"))
    lines += [f"    {l}" for l in (facts.get("loud_lines") or [])[-8:]]
    if facts.get("signatures"):
        lines.append("  signatures:     " + ", ".join(m["name"] for m in facts["signatures"]))
    lines += ["", "last output:"]
    body = facts.get("output", "") if full_output else facts.get("tail", "")
    lines += [f"  | {l}" for l in body.splitlines()] or ["  (none)"]
    lines += ["", "what usually causes this:"]
    lines += [f"  - {cause}" for cause in c["causes"]]
    return "\n".join(lines)


EXIT_CODES = {"ready": 0, "failed-loudly": 1, "silent-exit": 3, "hang": 4}
