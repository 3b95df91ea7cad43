"""The runner's side of lab.cellserver: one fork server per set interpreter, cells as handles.

Contract. `CellServers(tmp).get(python, env)` returns the running server for
that interpreter (started on first use with `env`, the first cell's
environment with the runner's owner token in place of the cell's; later
calls reuse it), or None when one cannot be started — the caller then
starts `python -m lab.cellrun` itself, as before.
`server.launch(spec, log, token)` forks one cell process and returns a
`ForkedCell`, a Popen-like handle (pid, poll, wait(timeout) raising
subprocess.TimeoutExpired, terminate, kill, returncode) or None when the
server is gone or did not answer that request (matched by its id) within
LAUNCH_S: the server is then killed, with any child it forked, so the
caller's fallback process never runs beside a late fork. `close()` stops
every server (its children die with it: PR_SET_PDEATHSIG) and returns no
errors ([]; the Reaper's cleanup shape). Bounds: READY_S to import,
LAUNCH_S to answer a launch.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from lab.lifetime import popen

READY_S = 30.0   # s for a server to import and say it is ready
LAUNCH_S = 10.0  # s for a server to answer a launch with the child's pid


class ForkedCell:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def _finish(self, status: int) -> None:
        self.returncode = status
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"cell process {self.pid}", timeout)
        return self.returncode

    def _signal(self, sig: int) -> None:
        if not self._done.is_set():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class CellServer:
    def __init__(self, python: str, env: dict, log: Path) -> None:
        self.log = open(log, "ab")
        self.proc = popen([python, "-m", "lab.cellserver"], signal.SIGKILL, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=self.log, env=env, start_new_session=True)
        self.cells: dict[int, ForkedCell] = {}
        self.early: dict[int, int] = {}  # statuses that arrived before their launch reply was read
        self.launched: queue.Queue = queue.Queue()
        self.requests = 0
        self.lock = threading.Lock()
        self.ready = queue.Queue()
        threading.Thread(target=self._read, name="cell-server", daemon=True).start()
        try:
            self.preload_failed = self.ready.get(timeout=READY_S)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"cell server for {python} not ready in {READY_S:.0f}s") from None

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg.get("ready"):
                self.ready.put(msg.get("preload_failed") or [])
            elif "status" in msg:
                with self.lock:
                    cell = self.cells.pop(msg["pid"], None)
                    if cell is None:
                        self.early[msg["pid"]] = msg["status"]
                if cell is not None:
                    cell._finish(msg["status"])
            elif "pid" in msg:
                self.launched.put((msg.get("id"), msg["pid"]))
        with self.lock:  # the server is gone: so are its children (parent-death signal)
            cells, self.cells = list(self.cells.values()), {}
        for cell in cells:
            cell._finish(-signal.SIGKILL)
        self.launched.put((None, None))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def launch(self, spec: Path, log: Path, token: str) -> ForkedCell | None:
        if not self.alive():
            return None
        with self.lock:  # one request and its pid reply at a time
            self.requests += 1
            ident = self.requests
            try:
                self.proc.stdin.write((json.dumps({"spec": str(spec), "log": str(log), "token": token,
                                                   "id": ident}) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return None
            try:
                got, pid = self.launched.get(timeout=LAUNCH_S)
            except queue.Empty:
                got, pid = None, None
            if pid is None or got != ident:
                # no reply in time (or out of order): the server is not to be trusted with this cell
                # or the next; stopping it takes any child it forked with it (parent-death signal)
                self.proc.kill()
                return None
            cell = ForkedCell(pid)
            if pid in self.early:
                cell._finish(self.early.pop(pid))
            else:
                self.cells[pid] = cell
            return cell

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


class CellServers:
    def __init__(self, tmp: Path) -> None:
        self.tmp = Path(tmp)
        self.servers: dict[str, CellServer | None] = {}
        self.lock = threading.Lock()

    def get(self, python: str, env: dict) -> CellServer | None:
        from lab.reaper import OWNER_ENV, owner_token
        with self.lock:
            server = self.servers.get(python)
            if server is not None and server.alive():
                return server
            if python in self.servers and server is None:
                return None  # it could not start: cells run as plain processes
            try:
                server = CellServer(python, {**env, OWNER_ENV: owner_token()},
                                    self.tmp / f"cellserver-{len(self.servers)}.log")
            except (OSError, RuntimeError):
                server = None
            self.servers[python] = server
            return server

    def close(self) -> list[str]:
        with self.lock:
            servers, self.servers = [s for s in self.servers.values() if s], {}
        for server in servers:
            server.close()
        return []
