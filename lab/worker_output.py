"""Where a worker's stdout and stderr go, as a container runtime or a terminal gives them.

Contract: `STDIO_MODES` names the three ways a worker's output can be wired
(a profile's `stdio` key picks one; `pipe` is the default):
  pipe  stdout and stderr are two pipes (as Docker/containerd, Kubernetes and
        systemd's journal give them); a drain thread per pipe copies every
        byte to the worker's log file, complete lines at a time, so the two
        streams interleave by line, never inside one;
  tty   stdin, stdout and stderr are the slave of one pseudo-terminal
        (`docker run -t`), the controlling terminal of the worker's session;
        one drain reads the master side. The log keeps the raw bytes
        (colours, CR LF); `normalize()` gives judges plain text;
  file  stdout and stderr are the log file itself (the lab's old wiring: a
        regular file, which green-thread pools treat differently from a pipe).
`Wiring.open(mode, log_path)` returns the Popen keyword arguments and, after
`started()`, drains until EOF. `close(timeout)` waits for the drains (EOF
comes when every process holding the write side has exited) and then closes
the read sides, so a process that outlived teardown can never block the lab.
Memory is bounded (one 64 KiB read and one partial line per stream); the log
is capped at LOG_CAP_BYTES and anything beyond it is counted in
`dropped_bytes`, never silently lost. A reader that stops or vanishes is a
scenario's deliberate condition (silent-exit `stdout-reader-exits`), never
this module's behaviour: the drains read until EOF whatever the worker writes.
Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STDIO_MODES = {
    "pipe": "stdout and stderr are pipes the lab drains (a container runtime's default)",
    "tty": "stdin/stdout/stderr are a pseudo-terminal, the session's controlling terminal (docker -t)",
    "file": "stdout and stderr are the log file itself (a regular file)",
}
DEFAULT_STDIO = "pipe"
LOG_CAP_BYTES = 64 * 1024 * 1024
READ_BYTES = 65536
PARTIAL_FLUSH_S = 0.2     # a line without its newline yet is written after this long
MAX_PARTIAL = 64 * 1024   # ... or once it is this long
ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]")


def normalize(data: bytes) -> bytes:
    """Terminal output as plain text: ANSI escapes removed, CR LF as LF."""
    return ANSI.sub(b"", data).replace(b"\r\n", b"\n")


class _Sink:
    """The log file, shared by the drains of one worker; writes whole chunks under a lock."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "ab", buffering=0)
        self.lock = threading.Lock()
        self.written = 0
        self.dropped = 0

    def write(self, data: bytes) -> None:
        with self.lock:
            room = LOG_CAP_BYTES - self.written
            keep = data[:max(0, room)]
            if keep:
                self.fh.write(keep)
                self.written += len(keep)
            self.dropped += len(data) - len(keep)

    def close(self) -> None:
        with self.lock:
            self.fh.close()


class _Drain(threading.Thread):
    """Reads one fd to EOF and writes complete lines to the sink."""

    def __init__(self, fd: int, sink: _Sink, name: str) -> None:
        super().__init__(name=f"drain-{name}", daemon=True)
        self.fd, self.sink, self.stream = fd, sink, name
        self.bytes = 0
        self.partial_pending = False
        self.eof = False
        self.stop = threading.Event()

    def run(self) -> None:
        partial = b""
        while not self.stop.is_set():
            try:
                readable, _, _ = select.select([self.fd], [], [], PARTIAL_FLUSH_S)
            except (OSError, ValueError):
                break
            if not readable:
                if partial:
                    self.sink.write(partial)
                    partial = b""
                self.partial_pending = False
                continue
            try:
                chunk = os.read(self.fd, READ_BYTES)
            except OSError:  # EIO: the last holder of a pty slave closed it
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            data = partial + chunk
            cut = data.rfind(b"\n") + 1
            if cut:
                self.sink.write(data[:cut])
            partial = data[cut:]
            if len(partial) >= MAX_PARTIAL:
                self.sink.write(partial)
                partial = b""
            self.partial_pending = bool(partial)
            self.bytes += len(chunk)  # counted once written (or held as the partial line)
        if partial:
            self.sink.write(partial)


@dataclass
class Wiring:
    """One worker's stdio: the Popen arguments, the drains, and what they moved."""

    mode: str
    log_path: Path
    popen_kwargs: dict[str, Any] = field(default_factory=dict)
    _sink: _Sink | None = None
    _drains: list[_Drain] = field(default_factory=list)
    _child_fds: list[int] = field(default_factory=list)
    _parent_fds: list[int] = field(default_factory=list)
    _file: Any = None
    closed: bool = False

    @classmethod
    def open(cls, mode: str, log_path: Path) -> "Wiring":
        """Create the fds for `mode`; raises ValueError for an unknown mode."""
        if mode not in STDIO_MODES:
            raise ValueError(f"stdio {mode!r}; allowed: {', '.join(STDIO_MODES)}")
        wiring = cls(mode, Path(log_path))
        if mode == "file":
            wiring._file = open(log_path, "ab")
            wiring.popen_kwargs = {"stdout": wiring._file, "stderr": subprocess.STDOUT,
                                   "stdin": subprocess.DEVNULL}
            return wiring
        wiring._sink = _Sink(wiring.log_path)
        if mode == "pipe":
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            wiring._parent_fds = [out_r, err_r]
            wiring._child_fds = [out_w, err_w]
            wiring.popen_kwargs = {"stdout": out_w, "stderr": err_w, "stdin": subprocess.DEVNULL}
        else:  # tty
            master, slave = pty.openpty()
            attrs = termios.tcgetattr(slave)  # a terminal as `docker run -t` sets it up: echo off
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            wiring._parent_fds = [master]
            wiring._child_fds = [slave]
            wiring.popen_kwargs = {"stdin": slave, "stdout": slave, "stderr": slave}
        for fd in wiring._parent_fds:
            os.set_inheritable(fd, False)
        return wiring

    @property
    def tty_fd(self) -> int | None:
        """The slave fd the child makes its controlling terminal (tty mode), else None."""
        return self._child_fds[0] if self.mode == "tty" else None

    def started(self) -> None:
        """After Popen: close the child's ends here and start draining (pipe, tty)."""
        for fd in self._child_fds:
            os.close(fd)
        self._child_fds = []
        if self._file is not None:
            self._file.close()
            self._file = None
        names = ["stdout", "stderr"] if self.mode == "pipe" else ["tty"]
        for fd, name in zip(self._parent_fds, names):
            drain = _Drain(fd, self._sink, name)
            drain.start()
            self._drains.append(drain)

    def sync(self, timeout: float = 1.0, until_eof: bool = False) -> bool:
        """Wait (up to `timeout` s) until every byte written so far is in the log file.

        Judges read the file right after an exit: bytes still in a pipe or a
        partial line held by a drain would be missing. With `until_eof` (the
        worker has exited) also wait, within the same bound, for every drain to
        reach end of file, so nothing its last writers left behind is missed
        on a loaded host. True when in sync.
        """
        deadline = time.monotonic() + timeout
        targets = [(d, d.bytes + _pending(d.fd)) for d in self._drains if d.is_alive()]
        while True:  # only what was written before the call: a busy writer cannot hold us up
            behind = [d for d, target in targets if d.is_alive() and (d.bytes < target or d.partial_pending)]
            if until_eof:
                behind += [d for d in self._drains if d.is_alive() and not d.eof and d not in behind]
            if not behind or time.monotonic() >= deadline:
                return not [d for d, target in targets if d.is_alive() and (d.bytes < target or d.partial_pending)]
            time.sleep(0.01)

    def abandon(self) -> None:
        """Popen failed: release every fd."""
        for fd in self._child_fds + self._parent_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._child_fds, self._parent_fds = [], []
        if self._file is not None:
            self._file.close()
        if self._sink is not None:
            self._sink.close()
        self.closed = True

    def close(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait up to `timeout` s for EOF on every stream, then close; returns `facts()`."""
        if self.closed:
            return self.facts()
        for drain in self._drains:
            drain.join(timeout)
        for drain in self._drains:  # a holder we could not kill: stop reading, say so
            drain.stop.set()
            drain.join(1.0)
        for fd in self._parent_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self._sink is not None:
            self._sink.close()
        self.closed = True
        return self.facts()

    def facts(self) -> dict[str, Any]:
        """What the record says about the wiring: mode, bytes per stream, bytes over the cap."""
        out: dict[str, Any] = {"stdio": self.mode, "stdio_meaning": STDIO_MODES[self.mode]}
        if self._drains:
            out["stdio_bytes"] = {d.stream: d.bytes for d in self._drains}
            out["stdio_drained_to_eof"] = all(d.eof for d in self._drains)
        if self._sink is not None and self._sink.dropped:
            out["stdio_dropped_bytes"] = self._sink.dropped
        return out


def _pending(fd: int) -> int:
    """Bytes waiting to be read on a pipe or pty master (FIONREAD); 0 if unknown."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def controlling_tty_preexec():
    """A preexec_fn: a new session whose controlling terminal is fd 0 (the pty slave,
    already dup'ed there by subprocess before preexec_fn runs).

    setsid() then TIOCSCTTY, as `docker run -t` and login(1) do: the worker then
    gets SIGHUP if the terminal goes away, and isatty() is true on fds 0-2.
    """
    def _preexec() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return _preexec
