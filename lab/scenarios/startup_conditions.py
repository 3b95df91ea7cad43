"""Start-up conditions for the silent-exit scenario.

Contract: `Condition` names every condition (the scenario's modes).
`prepare(condition, cell, workdir, worker_env)` returns the WorkerSpec
overrides (env, wrapper argv prefix, shm mode, extra args) that put a worker
under it, plus the resources it holds (a refused port, a silent listener:
lab.scenarios.startup_brokers) to close afterwards; it raises
WorkerCannotRun when the host cannot make the condition (no user
namespaces, no unshare). The closed-stdio and reader-exits conditions are
deliberate wrappers around the lab's own wiring (lab.worker_output: pipes
the lab drains to EOF by default), so a reader that stops is always the
condition, never the harness. Watching the start is an observer's job
(lab.observers.start_watch.watch_start, re-exported here). Conditions never
decide a verdict; observations do.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from lab import diagnose, hostinfo
from lab.observers.start_watch import INNER_STATUS, shutdown_requested, watch_start  # noqa: F401 - re-exported
from lab.scenarios.startup_brokers import RefusedPort, SilentBroker, broker_url
from lab.worker import WorkerCannotRun

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
