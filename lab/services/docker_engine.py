"""Is a Docker engine reachable, and a private one for tests and CI when not.

Contract: `docker_reachable(host=None, timeout=2.0)` pings DOCKER_HOST (or the
default unix socket) and returns a bool within about `timeout` seconds; it
never raises. `DockerEngine` installs nothing: `start()` reuses an engine
that answers, else runs the `dockerd` on PATH privately -- bridge, iptables
and ip forwarding off (containers use host networking), data, exec root,
socket, pidfile and a config file all in a temp dir of its own, so it never
meets a system Docker -- spawned with `spawn_server` (it and the containerd
it supervises carry LAB_OWNER) and returns once `/_ping` answers, or raises
ServiceError with the log tail. `.host` is the URL to use as DOCKER_HOST;
`.started` tells whether this object runs the daemon. `stop()` (idempotent;
a no-op for an engine it did not start) stops dockerd, kills any containerd
or shim still running from its directory, unmounts what the daemon left
mounted there and removes the directory. Use it as a context manager.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import psutil

from lab.services.base import ServiceError, log_tail, spawn_server, stop_process, wait_until

DEFAULT_HOST = "unix:///var/run/docker.sock"
DAEMON_FLAGS = ["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                "--ip-masq=false", "--userland-proxy=false", "--live-restore=false"]


def current_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _http_ping(sock: socket.socket) -> bool:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    reply = sock.recv(1024)
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def docker_reachable(host: str | None = None, timeout: float = 2.0) -> bool:
    """True when the engine at `host` (default: DOCKER_HOST / the default socket) answers /_ping."""
    host = host or current_host()
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(url.path)
                return _http_ping(sock)
        if url.scheme in ("tcp", "http") and os.environ.get("DOCKER_TLS_VERIFY") in (None, "", "0"):
            with socket.create_connection((url.hostname, url.port or 2375), timeout=timeout) as sock:
                sock.settimeout(timeout)
                return _http_ping(sock)
        import docker  # tls, ssh, npipe: let the SDK speak it
        client = docker.DockerClient(base_url=host, timeout=max(1, int(timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def find_dockerd() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)


class DockerEngine:
    """A reachable Docker engine: the one already running, or a private dockerd."""

    def __init__(self, root: Path | None = None, data_root: Path | None = None,
                 start_timeout: float = 60.0, reuse: bool = True):
        self.root = Path(root) if root else None
        self.data_root = Path(data_root) if data_root else None
        self.start_timeout = start_timeout
        self.reuse = reuse
        self.host = ""
        self.started = False
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.version = ""
        self.startup_seconds = 0.0
        self._made_root = False

    def start(self) -> "DockerEngine":
        if self.host:
            return self
        began = time.monotonic()
        if self.reuse and docker_reachable():
            self.host = current_host()
        else:
            self._spawn()
        self.startup_seconds = time.monotonic() - began
        self.version = self._server_version()
        return self

    def _spawn(self) -> None:
        dockerd = find_dockerd()
        if not dockerd:
            raise ServiceError("no Docker engine reachable and no dockerd to start "
                               "(Debian: apt-get install docker.io)")
        if os.geteuid() != 0:
            raise ServiceError("starting a private dockerd needs root (rootless Docker is not set up here)")
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="lab-docker-"))   # short: sun_path is 108 bytes
            self._made_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        data_root = self.data_root or self.root / "data"
        (self.root / "daemon.json").write_text("{}\n")
        sock = self.root / "docker.sock"
        self.log_path = self.root / "dockerd.log"
        argv = [dockerd, *DAEMON_FLAGS, "--config-file", str(self.root / "daemon.json"),
                "--data-root", str(data_root), "--exec-root", str(self.root / "exec"),
                "-H", f"unix://{sock}", "--pidfile", str(self.root / "docker.pid")]
        self.proc = spawn_server(argv, self.log_path, cwd=self.root)
        self.started = True
        self.host = f"unix://{sock}"
        try:
            wait_until(self._answers, timeout=self.start_timeout, interval=0.2, what="dockerd to answer")
        except ServiceError as exc:
            tail = log_tail(self.log_path)
            self.stop()
            raise ServiceError(f"{exc}\n{tail}") from None

    def _answers(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise ServiceError(f"dockerd exited with {self.proc.returncode}\n{log_tail(self.log_path)}")
        return docker_reachable(self.host, timeout=1.0)

    def _server_version(self) -> str:
        try:
            import docker
            client = docker.DockerClient(base_url=self.host, timeout=10)
            try:
                return client.version().get("Version", "")
            finally:
                client.close()
        except Exception:
            return ""

    def leftovers(self) -> list[psutil.Process]:
        """Processes started from our directory (containerd, shims) still alive."""
        if not self.root:
            return []
        mark, found = str(self.root), []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(mark in arg for arg in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def stop(self) -> None:
        if not self.started:
            self.host = ""
            return
        stop_process(self.proc, timeout=30)   # dockerd stops its containers and its containerd
        self.proc = None
        for proc in self.leftovers():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(self.leftovers(), timeout=5)
        self._unmount()
        if self._made_root and self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        self.started = False
        self.host = ""

    def _unmount(self) -> None:
        """Unmount what dockerd left below our directory (netns nsfs, overlay, shm), deepest first."""
        if not self.root:
            return
        roots = [str(self.root)] + ([str(self.data_root)] if self.data_root else [])
        with open("/proc/self/mounts") as handle:
            points = [line.split()[1].replace("\\040", " ") for line in handle]
        for point in sorted({p for p in points if any(p.startswith(r + "/") for r in roots)}, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)

    def __enter__(self) -> "DockerEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
