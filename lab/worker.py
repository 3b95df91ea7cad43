"""The worker controller: one real `celery worker` process group per instance.

Contract: `WorkerController.start()` launches `python -m celery -A
lab.app.celery_app worker ...` in its own session (pgid == pid), with the
cell's environment. Its stdout and stderr are wired as `spec.stdio` says
(lab.worker_output: `pipe` by default — two pipes drained to
`<workdir>/<name>.log`, as a container runtime does —, `tty`, or `file`).
The worker runs with Celery's own defaults (gossip, mingle, heartbeat on)
unless `spec.profile_args` (a profile's `worker_args`) says otherwise (or
it is a drain worker, `spec.observer`: without mingle), and
`environment["deviations"]` lists every way the command and its
environment differ from a plain `celery -A lab.app.celery_app worker`.
Readiness is the
worker_ready journal event from the master, confirmed alive ~1 s later.
Every signal, kill and exit is appended to `faults` with monotonic time.
`teardown()` SIGKILLs whatever is left of the group and of processes carrying
this worker's LAB_WORKER_ID, and returns what it had to kill. `wrapper` is an
argv prefix run inside the /dev/shm namespace (e.g. prlimit/setpriv for an
unprivileged, resource-limited worker; a wrapper that forks means the
worker_ready pid is not the Popen pid, so wait_ready() does not apply). When /dev/shm
is not writable (or shm="private"), the worker runs in a private mount
namespace with its own tmpfs on /dev/shm; shm="readonly" mounts a read-only
one (a hostile environment for scenarios). Every worker starts with default
signal dispositions (`env --default-signal`), whatever the lab inherited,
and with a parent-death signal (SIGKILL when the cell process dies, recorded
as `die_with_cell`): `unshare` and `env` exec in place, so it reaches the
master; forked pool children are swept by LAB_OWNER.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lab import hostinfo
from lab.journal import JOURNAL_ENV, read_journal, select
from lab.lifetime import popen, supported as pdeathsig_supported
from lab.reaper import OWNER_ENV, owner_token
from lab.worker_fidelity import OBSERVER_FLAGS, QUIET_FLAGS, deviations  # noqa: F401 - QUIET_FLAGS re-exported
from lab.worker_output import DEFAULT_STDIO, Wiring, controlling_tty_preexec, normalize
from lab.waits import waiting

WORKER_ID_ENV = "LAB_WORKER_ID"
SHM_MODES = ("auto", "host", "private", "readonly")


class WorkerCannotRun(RuntimeError):
    """The host cannot run this worker configuration (the reason says why)."""


@dataclass
class WorkerSpec:
    pool: str
    concurrency: int = 2
    queue: str = "celery"
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    loglevel: str = "INFO"
    shm: str = "auto"
    python: str = sys.executable
    app: str = "lab.app.celery_app"
    profile_args: list[str] = field(default_factory=list)  # a profile's worker_args (e.g. QUIET_FLAGS)
    stdio: str = DEFAULT_STDIO  # pipe | tty | file (lab.worker_output.STDIO_MODES)
    wrapper: list[str] = field(default_factory=list)  # argv prefix (prlimit, setpriv, sh -c ...)
    observer: bool = False  # a drain worker: OBSERVER_FLAGS (lab.worker_fidelity), never the worker under test

    def argv(self, hostname: str) -> list[str]:
        argv = [self.python, "-m", "celery", "-A", self.app, "worker", "-P", self.pool,
                "-c", str(self.concurrency), "-l", self.loglevel, "-n", hostname,
                "-Q", self.queue]
        # `env --default-signal`: a worker never inherits ignored signals from whatever
        # started the lab (a background job ignores SIGINT/SIGQUIT), as in a container
        observer = [f for f in OBSERVER_FLAGS if f not in self.profile_args] if self.observer else []
        return (["env", "--default-signal"] + list(self.wrapper) + argv + list(self.profile_args)
                + observer + list(self.extra_args))

    def deviations(self) -> list[dict[str, str]]:
        """Every way this worker differs from a plain `celery -A <app> worker` (lab.worker_fidelity)."""
        return deviations(self)


@dataclass
class ExitInfo:
    returncode: int | None         # None: still running after the bound
    elapsed_s: float
    signal_name: str | None = None

    @property
    def exited(self) -> bool:
        return self.returncode is not None

    def describe(self) -> str:
        if self.returncode is None:
            return f"still running after {self.elapsed_s:.1f}s"
        if self.signal_name:
            return f"killed by {self.signal_name} after {self.elapsed_s:.1f}s"
        return f"exit {self.returncode} after {self.elapsed_s:.1f}s"


class WorkerController:
    def __init__(self, spec: WorkerSpec, workdir: Path, journal: Path, name: str = "worker"):
        # absolute: the worker runs with cwd=workdir and must find the same journal
        self.spec, self.workdir, self.journal, self.name = spec, Path(workdir).resolve(), Path(journal).resolve(), name
        self.worker_id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.hostname = f"{self.worker_id}@lab"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.faults: list[dict] = []
        self.environment: dict = {}
        self.started_mono = 0.0
        self.wiring: Wiring | None = None

    # -- start -------------------------------------------------------------
    def _wrap_for_shm(self, argv: list[str]) -> list[str]:
        mode = self.spec.shm
        status = hostinfo.shm_status()
        if mode == "auto":
            mode = "private" if (self.spec.pool == "prefork" and status != "writable") else "host"
        self.environment.update({"host_shm": status, "shm_mode": mode})
        if mode == "host":
            return argv
        possible, reason = hostinfo.private_mount_namespace()
        if not possible:
            raise WorkerCannotRun(f"/dev/shm is {status} on this host and a private mount "
                                  f"namespace cannot be made: {reason}")
        opts = "size=64m,mode=1777" + (",ro" if mode == "readonly" else "")
        script = f'mount -t tmpfs -o {opts} lab-shm /dev/shm && exec "$0" "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script] + argv

    def command(self) -> list[str]:
        return self._wrap_for_shm(self.spec.argv(self.hostname))

    def start(self) -> "WorkerController":
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        env = dict(os.environ)
        env.update(self.spec.env)
        env.update({JOURNAL_ENV: str(self.journal), OWNER_ENV: owner_token(),
                    WORKER_ID_ENV: self.worker_id, "PYTHONUNBUFFERED": "1"})
        self.environment["argv"] = argv
        self.environment["die_with_cell"] = "SIGKILL" if pdeathsig_supported() else "no"
        self.environment["deviations"] = self.spec.deviations()
        if self.environment.get("shm_mode") in ("private", "readonly"):
            self.environment["deviations"].append({"what": f"/dev/shm: {self.environment['shm_mode']} tmpfs "
                                                   "(unshare --mount)", "why": "the host's /dev/shm or the "
                                                   "scenario's condition"})
        self.wiring = Wiring.open(self.spec.stdio, self.log_path)
        session = self._session()
        try:  # dies with the cell process (PR_SET_PDEATHSIG), in a session of its own
            self.proc = popen(argv, signal.SIGKILL, preexec=session.pop("preexec_fn", None), env=env,
                              cwd=self.workdir, **session, **self.wiring.popen_kwargs)
        except BaseException:
            self.wiring.abandon()
            raise
        self.wiring.started()
        self.environment.update(self.wiring.facts())
        self.started_mono = time.monotonic()
        self._fault("start", detail=" ".join(argv[-12:]))
        return self

    def _session(self) -> dict:
        """Popen arguments that put the worker in a session of its own (pgid == pid);
        under tty also with the pty as its controlling terminal (setsid + TIOCSCTTY)."""
        if self.spec.stdio == "tty":
            return {"preexec_fn": controlling_tty_preexec()}
        return {"start_new_session": True}

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    # -- observe -----------------------------------------------------------
    def events(self) -> list[dict]:
        return read_journal(self.journal)

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0, confirm_s: float = 0.0) -> bool:
        """True once worker_ready was journaled by this master (within `timeout` s) and it
        still lives `confirm_s` s later. A confirmation matters only where the judge reads an
        exit right after ready (start-up conditions); elsewhere a later death shows in the
        scenario's own exit observation, so the default is none (issue 15: the fixed 1.0 s
        cost 188 s of the default matrix). Waits are booked in lab.waits ("start", "confirm")."""
        deadline = time.monotonic() + timeout
        with waiting("start"):
            while True:
                if select(self.events(), "worker_ready", pid=self.pid):
                    break
                if not self.is_alive() or time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
        with waiting("confirm"):
            end = time.monotonic() + confirm_s
            while time.monotonic() < end:
                if not self.is_alive():
                    return False
                time.sleep(0.05)
        return True

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def tree(self) -> list[dict]:
        out = []
        for proc in self.survivors(include_master=True):
            try:
                out.append({"pid": proc.pid, "ppid": proc.ppid(), "name": proc.name(),
                            "status": proc.status(), "cmd": " ".join(proc.cmdline()[:6])})
            except psutil.Error:
                continue
        return out

    def survivors(self, include_master: bool = False) -> list[psutil.Process]:
        """Live processes of this worker (by LAB_WORKER_ID), orphans included."""
        found = []
        for proc in psutil.process_iter(["pid"]):
            if not include_master and self.proc and proc.pid == self.proc.pid:
                continue
            try:
                if (proc.environ().get(WORKER_ID_ENV) == self.worker_id
                        and proc.status() != psutil.STATUS_ZOMBIE):
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    # -- act ---------------------------------------------------------------
    def _fault(self, kind: str, **fields) -> dict:
        entry = {"kind": kind, "mono": time.monotonic(), "wall": time.time(),
                 "worker": self.name, **fields}
        self.faults.append(entry)
        return entry

    def send(self, sig: int, target: str = "master") -> None:
        """Deliver a real signal to the master, or to the whole process group."""
        name = signal.Signals(sig).name
        self._fault("signal", signal=name, target=target, pid=self.pid)
        try:
            if target == "group":
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            self.faults[-1]["detail"] = "process already gone"

    def kill_child(self, pid: int | None = None) -> int | None:
        """SIGKILL one pool child (the given pid if it is a child, else the first); its pid or None."""
        kids = [c.pid for c in self.children() if c.pid != self.pid]
        if pid is not None:  # a named child that is gone is not replaced by another
            target = pid if pid in kids else None
        else:
            target = kids[0] if kids else None
        if target is not None:
            self._fault("kill", signal="SIGKILL", target="child", pid=target)
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                self.faults[-1]["detail"] = "child already gone"
        return target

    def wait_exit(self, timeout: float) -> ExitInfo:
        start = time.monotonic()
        try:
            with waiting("observe"):
                code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return ExitInfo(None, time.monotonic() - start)
        sig = signal.Signals(-code).name if code < 0 else None
        self._fault("exit", returncode=code, signal=sig, pid=self.pid)
        return ExitInfo(code, time.monotonic() - start, sig)

    def teardown(self, timeout: float = 10.0) -> list[dict]:
        """Kill everything left of this worker; return what had to be killed."""
        killed = []
        if self.proc is None:
            return killed
        for proc in self.survivors(include_master=True):
            try:
                killed.append({"pid": proc.pid, "name": proc.name(), "cmd": " ".join(proc.cmdline()[:6])})
            except psutil.Error:
                continue
        if self.is_alive():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.survivors(include_master=True):
            try:
                proc.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        psutil.wait_procs(self.survivors(include_master=True), timeout=timeout)
        self.close_output()
        return killed

    def close_output(self, timeout: float = 5.0) -> None:
        """Drain to EOF and close the worker's stdio (after teardown: nothing holds it)."""
        if self.wiring is not None and not self.wiring.closed:
            self.environment.update(self.wiring.close(timeout))

    def log_text(self) -> str:
        """The worker's output so far (stdout and stderr by line); tty output as plain text."""
        if self.wiring is not None and not self.wiring.closed:
            exited = not self.is_alive()  # its pipes reach EOF unless a survivor holds them: wait for it
            self.wiring.sync(3.0 if exited else 1.0, until_eof=exited)
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        if self.spec.stdio == "tty":
            data = normalize(data)
        return data.decode(errors="replace")
