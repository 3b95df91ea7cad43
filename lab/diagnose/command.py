"""How a worker start ended: ready, failed loudly, exited silently, or hung.

Contract: one classifier for the silent-exit scenario and for
`lab diagnose -- <worker command>`. `analyze_output(text)` reads a worker's
output (banner, task list, `ready.` line, shutdown lines, lines at WARNING+,
known signatures); `classify_start(facts)` turns those plus the process facts
(ready confirmed, exit code or signal, leftovers, bound) into a StartClass:
  ready          reached ready and was still alive `confirm` seconds later;
  failed-loudly  exited before ready, non-zero, and something at WARNING+ said why;
  silent-exit    exited before ready with status 0, or with nothing at WARNING+;
  hang           neither ready nor exited within the bound (with or without output).
`diagnose_command(argv)` runs a user's own command in a session of its own,
with default signal dispositions (as a container runtime starts it: a
SIG_IGN inherited from a shell's `&` or nohup would hide early signals),
with the output captured (bounded: head and tail kept) and every descendant
tracked (this process becomes a child subreaper, so backgrounded or
--detach'ed workers stay visible), waits for ready / exit / the bound,
stops what is left (TERM, then KILL) and returns the facts and the class.
Readiness comes from the output only (`ready.` at INFO or `celery@... ready`)
and from the process state — a user's app has no journal. Hints are
heuristics over the evidence, never an input to the class. No Celery import.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from lab import signatures
from lab.verdict import Verdict

READY_LINE = re.compile(r"(?:INFO/MainProcess\].*\bready\.\s*$|\bcelery@\S+ ready\b|\S+@\S+ ready\.\s*$)", re.M)
BANNER = re.compile(r"^\s*(?:-+\s*)?\S+@\S+ v\d+\.\d+|\.> transport:", re.M)
TASK_LIST = re.compile(r"^\[tasks\]\s*$", re.M)
SHUTDOWN_LINE = re.compile(r"worker: (?:Warm|Cold|Soft) shutdown|Hitting Ctrl\+C|Restarting celery worker")
# At WARNING+ but explains nothing about a failing start (every root or legacy-config run prints them).
BENIGN = re.compile(r"SecurityWarning|superuser privileges|PendingDeprecationWarning|DeprecationWarning|"
                    r"celery upgrade settings|Please specify a different user")
EXTRA_LOUD = re.compile(r"^(?:Fatal Python error|Segmentation fault|Killed$|[\w.]*(?:Error|Exception)(?::|$))")

PENDING_SHUTDOWN = re.compile(r"worker: (?:Warm|Cold|Soft) shutdown")
PENDING_GRACE_S = 8.0  # a shutdown requested during start-up: time it gets to take effect after ready
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 256 * 1024


def analyze_output(text: str) -> dict[str, Any]:
    """Facts read from a worker's output (stdout and stderr interleaved)."""
    lines = text.splitlines()
    loud = signatures.loud_lines(text)
    loud += [l for l in lines if EXTRA_LOUD.match(l.strip()) and l not in loud]
    explaining = [l for l in loud if not BENIGN.search(l)]
    ready = READY_LINE.search(text)
    return {
        "banner_seen": bool(BANNER.search(text)),
        "tasks_seen": bool(TASK_LIST.search(text)),
        "ready_line": ready.group(0).strip()[:200] if ready else None,
        "shutdown_lines": [l.strip() for l in lines if SHUTDOWN_LINE.search(l)][-4:],
        "loud_lines": [l[:300] for l in loud][-12:],
        "explaining_lines": [l[:300] for l in explaining][-12:],
        "signatures": [m.to_dict() for m in signatures.classify(text)],
        "hint_keys": hint_keys(text),
        "tail": "\n".join(lines[-30:]),
        "output_bytes": len(text.encode(errors="replace")),
    }


# -- hints: what usually causes an evidence pattern ---------------------------
PATTERN_HINTS = [
    ("shm", r"Read-only file system|/dev/shm|SemLock|sem_open|_multiprocessing\.SemLock",
     "prefork needs POSIX semaphores in a writable /dev/shm; the container mounts it read-only or "
     "not at all (mount an emptyDir with medium: Memory on /dev/shm, or use a pool without children)."),
    ("fork", r"Resource temporarily unavailable|can't start new thread|BlockingIOError: \[Errno 11\]|"
             r"\[Errno 11\]|EAGAIN",
     "fork()/clone() refused: a process or thread limit (RLIMIT_NPROC for a non-root user, the pids "
     "cgroup / pids.max of the container) is below what the pool needs."),
    ("memory", r"MemoryError|Cannot allocate memory|\[Errno 12\]|failed to map segment|mmap",
     "an address-space / memory limit (ulimit -v, RLIMIT_AS, a memory cgroup) is too low for the "
     "interpreter, the pool or its thread stacks."),
    ("retry-off", r"connection to the message broker after a connection loss has\s+been disabled|"
                  r"broker_connection_retry_on_startup=False",
     "the broker refused the connection and broker_connection_retry_on_startup is False: the worker "
     "shuts down on the first failed attempt."),
    ("refused", r"Cannot connect to \S+|Connection refused|Error 111|\[Errno 111\]",
     "the broker is not reachable at that address (not started yet, wrong host/port, DNS, network "
     "policy)."),
    ("broken-pipe", r"BrokenPipeError|\[Errno 32\]",
     "the reader of the worker's stdout/stderr went away (a log shipper, `| head`, a closed "
     "terminal); the next write fails."),
    ("bad-fd", r"Bad file descriptor|\[Errno 9\]|NoneType' object has no attribute 'write'",
     "stdout or stderr is closed (`>&-`, a supervisor that closes them); Celery writes the banner "
     "and shutdown lines to sys.__stdout__ and logs to sys.__stderr__."),
    ("keyboard", r"KeyboardInterrupt|^Aborted!$",
     "SIGINT arrived before Celery installed its handler (before the banner): Python raised "
     "KeyboardInterrupt."),
    ("permission", r"Permission denied|\[Errno 13\]",
     "the worker's user cannot read or write something it needs (app code, the log or pid file, "
     "the working directory)."),
]


def hint_keys(text: str) -> list[str]:
    return [key for key, pattern, _ in PATTERN_HINTS if re.search(pattern, text, re.M)]


CLASS_HINTS = {
    "exit0-shutdown-line": (
        "A shutdown signal (SIGTERM, SIGINT or SIGQUIT) reached the worker after Celery installed its "
        "handlers (right after the banner) but before the consumer was ready. Celery treats it as an "
        "ordinary shutdown: WorkController.start() catches the SystemExit, Blueprint.stop() finds the "
        "blueprint not fully started and 'can safely exit' (celery/bootsteps.py), and the process "
        "ends with only a 'worker: Warm/Cold shutdown' line on stdout and status 0 (SIGINT: 1). "
        "With gevent/eventlet the worker may even print 'ready.' first and stop ~2 s later. Usual senders: "
        "the orchestrator replacing or stopping the pod (rolling update, a failing startup/liveness "
        "probe, scale-down), `timeout`, a supervisor, a shell forwarding Ctrl-C."),
    "exit0-after-banner": (
        "Status 0 after the banner with no shutdown line: app code raised SystemExit(0) / called "
        "sys.exit() during start-up (a bootstep, a signal handler, a module imported late) — "
        "WorkController.start() turns SystemExit into a quiet stop with that code; or the process "
        "you watched is not the worker: a wrapper backgrounded it (`celery worker &`) or it "
        "--detach'ed, and the parent exited (as PID 1 of a container this kills the worker)."),
    "exit0-before-banner": (
        "Status 0 before Celery printed anything: the command you watched did not run the worker in "
        "the foreground (a shell that backgrounds it or exits early, --detach, an entrypoint that "
        "ends), or app code exited while importing."),
    "exit0-after-ready": (
        "The worker reported ready and then ended with status 0 within the confirmation window: a "
        "shutdown signal or SystemExit arrived as the consumer started (it was already queued "
        "when the event loop checked for shutdown)."),
    "exit0-errors-logged": (
        "The output explains a failure but the exit status is 0: the status you see is not the "
        "worker's. A pipeline (`celery worker | tee log`) reports its last command's status unless "
        "`set -o pipefail`; a shell wrapper that does not `exec` the worker may exit 0 on its own."),
    "exit0-worker-left-running": (
        "The command exited 0 but worker processes are still running: the worker was backgrounded or "
        "--detach'ed. A supervisor that waits for its main process (Docker, Kubernetes, systemd "
        "Type=simple) considers it finished — as PID 1 of a container, the kernel then kills the rest."),
    "killed": (
        "Killed by a signal with nothing logged. SIGTERM/SIGHUP/SIGQUIT before Celery installed "
        "its handlers (before the banner) take the default action and kill the process silently; "
        "SIGKILL comes from the OOM killer, a container runtime, or a PID namespace whose PID 1 "
        "exited."),
    "nonzero-silent": (
        "Non-zero exit with nothing at WARNING or above: the error went to a stream you do not see "
        "(stderr closed or sent to /dev/null), it happened before logging was configured, or "
        "SIGINT/KeyboardInterrupt stopped the start-up (Celery exits 1 without logging)."),
    "hang-retrying": (
        "Neither ready nor exited, and the log keeps saying why: usually the broker is unreachable "
        "and broker_connection_retry_on_startup is on, so the worker retries up to "
        "broker_connection_max_retries times."),
    "hang-silent-after-banner": (
        "Stuck after the banner without a word: typically the broker accepts the TCP connection but "
        "never answers (a wrong port or protocol, a proxy or load balancer, a half-open network "
        "path) and the transport has no socket timeout; or a bootstep / signal handler blocks."),
    "hang-no-output": (
        "No output at all and still running: the output is not reaching you (stdout/stderr closed or "
        "redirected, block buffering), or the app blocks while being imported (a database or "
        "network call at import time)."),
    "hang-silent": (
        "Some output, then nothing and still running: the start-up blocks before the banner (app "
        "import, a signal handler, a slow DNS lookup)."),
    "failed-loudly": (
        "The worker said why it stopped (see the lines at WARNING or above); fix that cause."),
    "ready": ("The worker reached ready and stayed up."),
    "ready-shutdown-ignored": (
        "A shutdown signal arrived while the worker was starting: Celery printed the shutdown line "
        "(its handler ran and set the flag) but the start-up carried on to ready and the worker kept "
        "running — the request was lost. The sender (an orchestrator's SIGTERM at a rolling update) "
        "will wait for its grace period and SIGKILL, losing early-acked tasks. Send the signal again "
        "after ready, or delay stop requests until the worker is ready."),
}


HINT_ALIASES = {"nonzero-shutdown-line": "exit0-shutdown-line"}


@dataclass
class StartClass:
    klass: str          # ready | failed-loudly | silent-exit | hang
    sub: str            # the finer class (a key of CLASS_HINTS)
    verdict: str        # lab verdict value: pass | silent-exit | hang
    summary: str
    causes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_exit(code: int | None, sig: str | None) -> str:
    if code is None:
        return "still running"
    if sig:
        return f"killed by {sig}"
    if code > 128 and code - 128 < 65:
        try:
            return f"exit {code} (128+{signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit {code}"


def classify_start(facts: dict[str, Any]) -> StartClass:
    """The class of a start from process facts plus analyze_output() facts."""
    exit_code, sig = facts.get("exit_code"), facts.get("exit_signal")
    explaining = facts.get("explaining_lines") or []
    banner = facts.get("banner_seen")
    leftovers = facts.get("leftovers") or []
    how = describe_exit(exit_code, sig)
    if facts.get("ready") and facts.get("shutdown_ignored"):
        klass, sub, verdict = "ready", "ready-shutdown-ignored", Verdict.PASS
        summary = (f"reached ready in {facts.get('ready_s', 0):.1f}s and stayed up although a shutdown "
                   f"was requested during start-up ({(facts.get('shutdown_lines') or ['journal'])[-1]})")
    elif facts.get("ready"):
        klass, sub, verdict = "ready", "ready", Verdict.PASS
        summary = f"reached ready in {facts.get('ready_s', 0):.1f}s and stayed up"
    elif exit_code is None:
        klass, verdict = "hang", Verdict.HANG
        if explaining:
            sub = "hang-retrying"
            summary = (f"neither ready nor exited within {facts.get('bound_s', 0):.0f}s; "
                       f"it keeps saying: {_msg(explaining[-1])}")
        else:
            sub = ("hang-no-output" if not facts.get("output_bytes") else
                   "hang-silent-after-banner" if banner else "hang-silent")
            summary = (f"neither ready nor exited within {facts.get('bound_s', 0):.0f}s, nothing at WARNING+ "
                       f"({'banner shown' if banner else 'no banner'}; last output "
                       f"{_age(facts.get('last_output_age_s'))})")
    elif exit_code == 0 or not explaining:
        klass, verdict = "silent-exit", Verdict.SILENT_EXIT
        if exit_code == 0 and leftovers:
            sub = "exit0-worker-left-running"
        elif exit_code == 0 and explaining:
            sub = "exit0-errors-logged"
        elif exit_code == 0 and facts.get("shutdown_lines"):
            sub = "exit0-shutdown-line"
        elif exit_code == 0 and facts.get("ready_seen"):
            sub = "exit0-after-ready"
        elif exit_code == 0:
            sub = "exit0-after-banner" if banner else "exit0-before-banner"
        elif sig or (exit_code > 128 and not facts.get("output_bytes")):
            sub = "killed"
        elif facts.get("shutdown_lines"):
            sub = "nonzero-shutdown-line"
        else:
            sub = "nonzero-silent"
        said = (f"; the log said: {_msg(explaining[-1])}" if explaining else
                f"; only: {facts['shutdown_lines'][-1]}" if facts.get("shutdown_lines") else
                "; nothing at WARNING or above")
        when = (f"{facts['elapsed_s'] - facts['ready_s']:.1f}s after its ready line"
                if facts.get("ready_seen") and facts.get("ready_s") is not None and facts.get("elapsed_s")
                else f"before ready, {'after' if banner else 'before'} the banner")
        summary = f"exited {when} ({how} after {facts.get('elapsed_s', 0):.1f}s){said}"
    else:
        klass, sub, verdict = "failed-loudly", "failed-loudly", Verdict.PASS
        summary = (f"failed loudly before ready ({how} after {facts.get('elapsed_s', 0):.1f}s): "
                   f"{_msg(explaining[-1])}")
    if leftovers and klass != "ready":
        summary += f"; {len(leftovers)} process(es) still running after the command exited"
    causes = [CLASS_HINTS[HINT_ALIASES.get(sub, sub)]]
    causes += [text for key, _, text in PATTERN_HINTS if key in (facts.get("hint_keys") or [])]
    return StartClass(klass, sub, verdict.value, summary, causes)


def _msg(line: str, limit: int = 160) -> str:
    """A log line without its `[date: LEVEL/Process]` prefix, shortened."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _age(age: float | None) -> str:
    return "never" if age is None else f"{age:.1f}s before the watch ended"


# -- running a user's command ---------------------------------------------------
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
