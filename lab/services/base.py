"""The one small interface every broker / result-backend provider implements.

Contract: `Service.start()` returns only when the server answers on
127.0.0.1 (or raises ServiceError with the log tail); `url_for(namespace, role)`
returns a URL isolated to that namespace (its own database, vhost or key
space) for the role "broker" or "backend"; `stop()` is idempotent and leaves no process; `restart()` keeps the
port. Whoever calls start() owns the service and registers stop() with a
Reaper. Servers are spawned with `spawn_server`, so they carry LAB_OWNER and
LAB_SCOPE and are SIGKILLed by the kernel when the lab process that started
them dies (lab.lifetime; the owner sweep catches what that cannot reach).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lab.lifetime import popen
from lab.reaper import OWNER_ENV, owner_token


class ServiceError(RuntimeError):
    """A service could not be provided: a lab failure, never a finding."""


@dataclass
class Service:
    kind: str                      # redis | postgres | rabbitmq | sqlite
    provider: str = "local"        # url | container | local | embedded
    host: str = "127.0.0.1"
    port: int = 0
    workdir: Path | None = None
    version: str = ""
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def start(self) -> "Service":
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def discard(self) -> None:
        """End a server whose data and shutdown nobody reads any more (a cell's own broker at
        the cell's end); by default the same as stop(). Servers with a slow graceful stop
        override it with a kill."""
        self.stop()

    def prepare(self, namespace: str) -> None:
        """Create the namespace (database, vhost) a cell will use; idempotent."""

    def url_for(self, namespace: str, role: str = "broker") -> str:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "provider": self.provider, "port": self.port,
                "version": self.version, "log": str(self.log_path or ""), "notes": self.notes}


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free now, below the kernel's ephemeral range when it can
    be: a port from that range (bind to 0) can be taken between this call and the server's
    bind by any outgoing connection on the host — with several lanes of clients, that
    happened (RabbitMQ's `eaddrinuse`, issue 15) — and again while a broker is restarted on
    its port. Falls back to a kernel-chosen port."""
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(64):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def spawn_server(argv: list[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None, preexec=None, owner: str | None = None) -> subprocess.Popen:
    """Start a server in its own session, output to log_path, owned by the lab (LAB_OWNER =
    `owner`, default this process's token); `preexec` (e.g. dropping root) runs before the
    parent-death signal is set."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env[OWNER_ENV] = owner or owner_token()
    log = open(log_path, "ab")
    try:
        return popen(argv, preexec=preexec, stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, env=full_env, cwd=cwd, start_new_session=True)
    finally:
        log.close()


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0, graceful: bool = True) -> None:
    """TERM the process group and wait up to `timeout` seconds, then KILL it and wait up to
    5 s more (only the KILL when not `graceful`); the process is reaped when it ended within
    those waits (a process stuck in the kernel past them is left, unreaped). Never raises
    for a process that is already gone."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((15, timeout), (9, 5.0)) if graceful else ((9, 5.0),):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(path: Path | None, lines: int = 20) -> str:
    if not path or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
