"""Start-up conditions for the silent-exit scenario, and the start watcher.

Contract: `Condition` names every condition (the scenario's modes).
`prepare(condition, cell, workdir, worker_env)` returns the WorkerSpec
overrides (env, wrapper argv prefix, shm mode, extra args) that put a worker
under it, plus the resources it holds (a refused port, a silent listener)
to close afterwards; it raises WorkerCannotRun when the host cannot make
the condition (no user namespaces, no unshare). `watch_start(worker, ...)`
observes one start the way `lab diagnose` does — readiness from the log
line or the worker_ready event, confirmed by the process still running and
no shutdown journaled `confirm` seconds later; exit code or signal of the
process a supervisor would see; processes left behind — and adds what only
the lab knows (the journaled hook, shutdown signals, the inner worker's
status behind a pipe). Conditions never decide a verdict; observations do.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from lab import diagnose, hostinfo
from lab.journal import select
from lab.worker import WorkerCannotRun, WorkerController

SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP")
MOMENTS = {
    "init": "celeryd_init: before the banner, before Celery's signal handlers",
    "setup": "celeryd_after_setup: logging set up, before the banner and the handlers",
    "pool": "during the pool's start (handlers installed, after the banner)",
    "consumer": "after the pool started, before the consumer starts",
    "connect": "as the consumer connects to the broker",
}
OTHERS = {
    "baseline": "no condition: the control",
    "fork-refused": "run as nobody with RLIMIT_NPROC = its current tasks + 1: fork and threads refused",
    "shm-readonly": "/dev/shm is a read-only tmpfs",
    "shm-missing": "/dev/shm does not exist (a private /dev without it)",
    "rlimit-as": "RLIMIT_AS (address space) far below what a worker maps",
    "broker-refused": "the broker port refuses connections (retry on start-up on)",
    "broker-refused-noretry": "the broker port refuses connections, broker_connection_retry_on_startup=False",
    "broker-silent": "the broker accepts TCP but never answers",
    "stdout-closed": "the worker starts with stdout closed",
    "stderr-closed": "the worker starts with stderr closed",
    "stdout-reader-exits": "stdout is a pipe whose reader exits after the first 64 bytes of the banner",
    "systemexit0": "app code raises SystemExit(0) after the banner (a bootstep before the consumer)",
    "pid1-background": "PID 1 of a PID namespace is a shell that backgrounds the worker and exits",
    "pid1-detach": "the worker runs with --detach as PID 1 of a PID namespace",
    "pid1-tee": "PID 1 shell runs `worker 2>&1 | tee`; the worker fails loudly (refused, no retry)",
}
DESCRIPTIONS = {**{f"{s.lower()}-{m}": f"{s} at {m}: {d}" for s in SIGNALS for m, d in MOMENTS.items()},
                **OTHERS}
Condition = enum.Enum("Condition", {name.upper().replace("-", "_"): name for name in DESCRIPTIONS},
                      type=str)
Condition.__doc__ = "The silent-exit scenario's modes: " + ", ".join(DESCRIPTIONS)

NETWORK = {"broker-refused", "broker-refused-noretry", "broker-silent", "pid1-tee"}
PID1 = {"pid1-background", "pid1-detach", "pid1-tee"}
# An idle worker on Redis maps ~80 MiB (prefork, threads, solo), eventlet ~120, gevent ~220 (peak).
RLIMIT_AS_BYTES = 96 * 1024 * 1024
HOOK_MODULE = "lab.app.startup_hooks"
INNER_STATUS = "inner-status"  # file in the workdir: the worker's own status behind a pipe

SHM_MISSING_SCRIPT = r"""set -e
old="$LAB_WORKDIR/.host-dev"; mkdir -p "$old"
mount --bind /dev "$old"
mount -t tmpfs -o size=1m,mode=755 lab-dev /dev
for n in null zero full random urandom tty; do
  if [ -e "$old/$n" ]; then touch "/dev/$n"; mount --bind "$old/$n" "/dev/$n"; fi
done
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
umount -l "$old"
exec "$0" "$@"
"""
READER_SCRIPT = r""""$0" "$@" | head -c 64; s=("${PIPESTATUS[@]}")
echo "${s[0]}" > "$LAB_WORKDIR/inner-status"; exit "${s[1]}"
"""
TEE_SCRIPT = r""""$0" "$@" 2>&1 | tee -a "$LAB_WORKDIR/tee.log"; s=("${PIPESTATUS[@]}")
echo "${s[0]}" > "$LAB_WORKDIR/inner-status"; exit "${s[1]}"
"""
BACKGROUND_SCRIPT = '"$0" "$@" & exit 0'


def parse(mode: str) -> tuple[str | None, str | None]:
    """(signal, moment) of a signal condition, else (None, None)."""
    head, _, moment = mode.partition("-")
    if head.upper() in SIGNALS and moment in MOMENTS:
        return head.upper(), moment
    return None, None


# -- host probes ---------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def pid_namespace() -> tuple[bool, str]:
    return hostinfo.unshare_probe(["--pid", "--fork"], ["true"], "--pid")


def nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise WorkerCannotRun("no 'nobody' user to run an unprivileged worker") from None
    if os.geteuid() != 0:
        raise WorkerCannotRun("switching to an unprivileged user needs root")
    return entry.pw_uid, entry.pw_gid


@functools.lru_cache(maxsize=4)
def unprivileged_python(python: str, uid: int, gid: int) -> tuple[list[str], str]:
    """setpriv options that let `uid` run this interpreter and import Celery and the lab app.

    Plain setpriv when that works; else with CAP_DAC_READ_SEARCH kept as an ambient
    capability (the interpreter may live under a root-only directory, e.g. pyenv in
    /root). That capability bypasses read permission checks only: it does not exempt
    the process from RLIMIT_NPROC (only root, CAP_SYS_RESOURCE and CAP_SYS_ADMIN are).
    """
    base = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    probe = [python, "-c", "import celery, kombu, redis, lab.app.config"]
    for extra, note in (([], "plain setpriv"),
                        (caps, "setpriv keeping CAP_DAC_READ_SEARCH (ambient): the interpreter is not "
                               "readable by that user otherwise")):
        try:
            proc = subprocess.run(base + extra + ["--"] + probe, capture_output=True, text=True,
                                  timeout=60, cwd="/")
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkerCannotRun(f"setpriv probe failed: {exc}") from None
        if proc.returncode == 0:
            return base + extra + ["--"], note
    raise WorkerCannotRun(f"uid {uid} cannot run {python} and import Celery: "
                          f"{(proc.stderr or proc.stdout).strip()[-300:]}")


def tasks_of_uid(uid: int) -> int:
    """Threads (tasks) owned by this real uid: what RLIMIT_NPROC counts."""
    total = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        try:
            if proc.info["uids"] and proc.info["uids"].real == uid:
                total += proc.info["num_threads"] or 1
        except (psutil.Error, TypeError):
            continue
    return total


# -- brokers that refuse / never answer ------------------------------------------
class RefusedPort:
    """A loopback port bound but not listening: connect() is refused, nobody else gets it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class SilentBroker:
    """Accepts TCP connections on loopback and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.received = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="silent-broker", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.setblocking(False)
                self.accepted.append(conn)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                break
            for conn in list(self.accepted):  # read and drop: never answer
                try:
                    self.received += len(conn.recv(65536))
                except (BlockingIOError, OSError):
                    pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def broker_url(broker: str, port: int) -> str:
    if broker == "redis":
        return f"redis://127.0.0.1:{port}/0"
    if broker == "amqp":
        return f"amqp://guest:guest@127.0.0.1:{port}//"
    if broker == "sql-postgres":
        return f"sqla+postgresql+psycopg2://lab:lab@127.0.0.1:{port}/lab"
    raise ValueError(f"no network broker URL for {broker!r}")


# -- preparing a condition --------------------------------------------------------
@dataclass
class Prepared:
    overrides: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    listener: SilentBroker | None = None

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:
                pass


def not_applicable(mode: str, broker: str) -> str | None:
    if mode in NETWORK and broker == "sql":
        return "the SQLite broker is a file: there is no connection to refuse or leave unanswered"
    return None


def _settings(env: dict[str, str], **settings: Any) -> str:
    merged = json.loads(env.get("LAB_CELERY_SETTINGS") or "{}")
    merged.update(settings)
    return json.dumps(merged)


def prepare(mode: str, broker: str, workdir: Path, worker_env: dict[str, str],
            python: str = sys.executable) -> Prepared:
    """WorkerSpec overrides and held resources for one condition."""
    workdir = Path(workdir)
    env = {**worker_env, "LAB_WORKDIR": str(workdir)}
    out = Prepared()
    wrapper: list[str] = []
    sig, moment = parse(mode)
    if sig or mode == "systemexit0":
        modules = [m for m in env.get("LAB_APP_MODULES", "").split(",") if m]
        env["LAB_APP_MODULES"] = ",".join(modules + [HOOK_MODULE])
        env["LAB_STARTUP_MOMENT"] = moment or "consumer"
        env["LAB_STARTUP_ACTION"] = sig or "exit0"
    if mode in ("broker-refused", "broker-refused-noretry", "pid1-tee"):
        port = RefusedPort()
        out.closers.append(port.close)
        env["LAB_BROKER_URL"] = broker_url(broker, port.port)
        out.notes.append(f"broker URL points at 127.0.0.1:{port.port}, bound and not listening")
        if mode != "broker-refused":
            env["LAB_CELERY_SETTINGS"] = _settings(env, broker_connection_retry_on_startup=False)
    if mode == "broker-silent":
        out.listener = SilentBroker()
        out.closers.append(out.listener.close)
        env["LAB_BROKER_URL"] = broker_url(broker, out.listener.port)
        out.notes.append(f"broker URL points at a listener on 127.0.0.1:{out.listener.port} that never answers")
    if mode in PID1:
        possible, reason = pid_namespace()
        if not possible:
            raise WorkerCannotRun(f"a PID namespace cannot be made: {reason}")
    if mode in ("shm-missing",):
        possible, reason = hostinfo.private_mount_namespace()
        if not possible:
            raise WorkerCannotRun(f"a private mount namespace cannot be made: {reason}")
        out.overrides["shm"] = "host"
        wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SHM_MISSING_SCRIPT]
    elif mode == "shm-readonly":
        out.overrides["shm"] = "readonly"
    elif mode == "fork-refused":
        uid, gid = nobody()
        setpriv, how = unprivileged_python(python, uid, gid)
        os.chmod(workdir, 0o777)
        journal = workdir / "journal.jsonl"
        journal.touch()
        os.chmod(journal, 0o666)
        limit = tasks_of_uid(uid) + 1
        wrapper = ["prlimit", f"--nproc={limit}:{limit}"] + setpriv
        out.notes.append(f"runs as uid {uid} ({how}) with RLIMIT_NPROC={limit} (tasks of that uid now + 1)")
    elif mode == "rlimit-as":
        wrapper = ["prlimit", f"--as={RLIMIT_AS_BYTES}:{RLIMIT_AS_BYTES}", "--"]
        out.notes.append(f"RLIMIT_AS={RLIMIT_AS_BYTES // 2**20} MiB")
    elif mode == "stdout-closed":
        wrapper = ["sh", "-c", 'exec "$0" "$@" >&-']
    elif mode == "stderr-closed":
        wrapper = ["sh", "-c", 'exec "$0" "$@" 2>&-']
    elif mode == "stdout-reader-exits":
        wrapper = ["bash", "-c", READER_SCRIPT]
    elif mode == "pid1-background":
        wrapper = ["unshare", "--pid", "--fork", "sh", "-c", BACKGROUND_SCRIPT]
    elif mode == "pid1-detach":
        wrapper = ["unshare", "--pid", "--fork"]
        out.overrides["extra_args"] = ["--detach"]
    elif mode == "pid1-tee":
        wrapper = ["unshare", "--pid", "--fork", "bash", "-c", TEE_SCRIPT]
    inherited = diagnose.ignored_signals()
    if inherited:
        out.notes.append(f"the lab process ignores {', '.join(inherited)}; the worker starts with "
                         "default dispositions anyway")
    out.overrides["env"] = env
    # Default dispositions first (as a container runtime starts a process): a SIG_IGN the lab
    # inherited (a shell's `&` job ignores SIGINT/SIGQUIT) must not decide what early signals do.
    out.overrides["wrapper"] = [python, "-c", diagnose.DEFAULT_SIGNALS_SHIM] + wrapper
    return out


# -- watching one start -------------------------------------------------------------
def _ready_event(events: list[dict]) -> dict | None:
    found = select(events, "worker_ready")
    return found[-1] if found else None


def shutdown_requested(events: list[dict]) -> bool:
    """A shutdown journaled since this worker process (last) initialised."""
    inits = select(events, "worker_init")
    since = inits[-1]["mono"] if inits else float("-inf")
    return any(e.get("mono", 0) >= since for e in events
               if e.get("event") in ("worker_shutting_down", "worker_shutdown"))


def _term_and_wait(worker: WorkerController, bound: float) -> str:
    """SIGTERM the worker's process group; wait for it and every process of this worker."""
    t0 = time.monotonic()
    worker.send(signal.SIGTERM, target="group")
    outer = worker.wait_exit(bound)
    left = worker.survivors(include_master=True)
    while left and time.monotonic() - t0 < bound:
        time.sleep(0.1)
        left = worker.survivors(include_master=True)
    if left or not outer.exited:
        return (f"still running after {bound:.0f}s: {len(left)} worker process(es)"
                + (f" ({outer.describe()} for the command itself)" if outer.exited else ""))
    return f"stopped in {time.monotonic() - t0:.1f}s ({outer.describe()})"


def watch_start(worker: WorkerController, bound: float, confirm: float,
                pending_grace: float = diagnose.PENDING_GRACE_S) -> dict[str, Any]:
    """Observe a started worker until confirmed ready, exited, or the bound.

    Ready: the ready event or line, then still running `confirm` s later. If a
    shutdown was requested since the process initialised (journaled), it gets
    `pending_grace` more seconds to take effect; still running after that, it is
    ready with `shutdown_ignored`.
    """
    t0 = worker.started_mono
    ready_at = None
    ready = False
    ready_source = None
    pending = False
    while True:
        now = time.monotonic()
        alive = worker.is_alive()
        events = worker.events()
        if ready_at is None:
            if _ready_event(events):
                ready_at, ready_source = now, "journal"
            elif diagnose.READY_LINE.search(worker.log_text()):
                ready_at, ready_source = now, "log"
        if ready_at is not None and alive and now - ready_at >= confirm:
            pending = shutdown_requested(events)
            if not pending or now - ready_at >= confirm + pending_grace:
                ready = True
                break
        if not alive or now - t0 >= bound + (pending_grace if pending else 0):
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    facts: dict[str, Any] = {"ready": ready, "ready_seen": ready_at is not None,
                             "shutdown_ignored": ready and pending,
                             "ready_source": ready_source, "bound_s": bound, "confirm_s": confirm,
                             "ready_s": round(ready_at - t0, 2) if ready_at else None,
                             "elapsed_s": round(elapsed, 2)}
    if ready or worker.is_alive():
        facts.update({"exit_code": None, "exit_signal": None, "leftovers": []})
        mtime = worker.log_path.stat().st_mtime if worker.log_path.exists() else None
        facts["last_output_age_s"] = (round(time.time() - mtime, 2)
                                      if mtime and worker.log_path.stat().st_size else None)
        text = worker.log_text()  # what the start produced, before the lab stops it
        # What a SIGTERM does now (an orchestrator's stop): noted, not judged here.
        facts["stop_after_ready" if ready else "stop_after_hang"] = _term_and_wait(worker, 15.0 if ready else 5.0)
        facts["stop_tail"] = worker.log_text()[len(text):][-2000:]
    else:
        info = worker.wait_exit(1)
        facts.update({"exit_code": info.returncode, "exit_signal": info.signal_name})
        time.sleep(0.3)  # let orphans show in the process table
        facts["leftovers"] = worker.tree()
        text = worker.log_text()
    facts.update(diagnose.analyze_output(text))
    events = worker.events()
    hooks = select(events, "startup_hook")
    facts["hook"] = hooks[0] if hooks else None
    facts["hook_returned"] = bool(select(events, "startup_hook_returned"))
    facts["shutting_down"] = [{k: e.get(k) for k in ("sig", "how", "exitcode")}
                              for e in select(events, "worker_shutting_down")]
    facts["worker_shutdown_event"] = bool(select(events, "worker_shutdown"))
    facts["journal_pids"] = sorted({e["pid"] for e in events if "pid" in e})[:20]
    facts["worker_inits"] = len(select(events, "worker_init"))
    inner = worker.workdir / INNER_STATUS
    facts["inner_status"] = inner.read_text().strip() if inner.exists() else None
    return facts
