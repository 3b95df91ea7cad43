"""RabbitMQ nodes booted ahead by the runner and handed, idle, to the cells that own their broker.

Why. A broker-fault cell on RabbitMQ needs a node of its own to restart, pause
and cut (lab.services.nemesis), and booting one takes about 5 s and 4 CPU-s
(RabbitMQ 3.10.8 on this 2-core host, plugins trimmed) per attempt: 33 boots
in the default matrix, 239 s of the 336 s of lab cost in its cells' time
(issue 15). A production worker also connects to a broker that was up before
it, so booting the node before the cell starts changes nothing the worker
sees; the second boot of a restart stays inside the fault, in the cell.

Contract.
- Runner: `SpareNodes(workdir, wanted)` boots up to AHEAD nodes at a time on
  one thread while fewer than `wanted` (the planned attempts of RabbitMQ
  broker-fault cells) were handed out, each with vhost NAMESPACE prepared,
  and writes `<workdir>/ready/<id>.json` once a node answers. Its processes
  carry the runner's token + "/spares" (the run's sweep finds them, a cell's
  does not) and die with the runner (lab.lifetime). `release(cell_dir)`
  kills and reaps the nodes the cell claimed (the cell has usually killed
  them already); `close()` stops the booter and kills every node; both return
  nothing and never raise.
- Cell: `claim(spares_dir, into)` moves one ready file into `into` (an
  atomic rename: two cells never get the same node) and returns its
  handover dict, or None when none is ready (the cell then boots its own, as
  before). `adopt(info, workdir)` is a RabbitMQServer driving that node:
  stop/start/discard work as on a node the cell booted; a restart's new node
  is the cell's own. The node's record says it was handed over and how long
  its boot took outside the cell (`notes`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from lab.reaper import child_token, owner_token
from lab.services.base import ServiceError

AHEAD = 2            # nodes booted and not yet claimed, at most (each holds about 100 MiB)
NAMESPACE = "broker_fault"   # lab.services.nemesis.NAMESPACE: the vhost prepared ahead
HANDOVER_NOTE = ("node booted ahead by the runner ({boot_s:.1f} s, outside this cell's time) and handed over "
                 "idle with vhost {vhost} prepared; a restart's new node is the cell's own")


class Adopted:
    """A Popen-like handle (pid, poll, wait) on a process another lab process started: used by
    stop_process and RabbitMQServer. A zombie counts as ended (its parent, the runner, reaps it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    self.returncode = -signal.SIGKILL
            except psutil.NoSuchProcess:
                self.returncode = -signal.SIGKILL  # the true status went to its parent
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


def claim(spares_dir: str | Path | None, into: Path) -> dict[str, Any] | None:
    """One ready node's handover dict, now this cell's (its file moved into `into`), or None."""
    ready = Path(spares_dir) / "ready" if spares_dir else None
    if ready is None or not ready.is_dir():
        return None
    into.mkdir(parents=True, exist_ok=True)
    for path in sorted(ready.glob("*.json")):
        target = into / f"spare-{path.name}"
        try:
            os.rename(path, target)
        except OSError:
            continue  # another cell took it first
        info = json.loads(target.read_text())
        if Adopted(info["pid"]).poll() is None:
            return info
    return None


def adopt(info: dict[str, Any], workdir: Path):
    """A RabbitMQServer on the handed-over node (its ports, node name, cookie and mnesia dir)."""
    from lab.services.rabbitmq import RabbitMQServer
    server = RabbitMQServer(Path(info["workdir"]))
    server.port, server.dist_port, server.epmd_port = info["port"], info["dist_port"], info["epmd_port"]
    server.nodename, server.version = info["nodename"], info["version"]
    server.log_path = Path(info["workdir"]) / "rabbitmq.log"
    server.plugins_dir = Path(info["plugins_dir"]) if info.get("plugins_dir") else None
    server.proc, server.epmd_proc = Adopted(info["pid"]), Adopted(info["epmd_pid"])
    server.spawned = server._descendants()
    server.handed_owner = info["owner"]
    server.prepared.add(info["vhost"])
    server.notes = list(info.get("notes", [])) + [HANDOVER_NOTE.format(**info)]
    if not server.answers():
        raise ServiceError(f"handed-over node {server.nodename} does not answer on port {server.port}")
    return server


class SpareNodes:
    def __init__(self, workdir: Path, wanted: int) -> None:
        self.workdir, self.wanted = Path(workdir), wanted
        (self.workdir / "ready").mkdir(parents=True, exist_ok=True)
        self.owner = child_token(owner_token(), "spares")
        self.nodes: dict[str, Any] = {}      # id -> RabbitMQServer (booted by this process)
        self.booted = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="lab-spare-nodes", daemon=True)
        self._thread.start()

    @property
    def dir(self) -> str:
        return str(self.workdir)

    def _ready(self) -> int:
        return len(list((self.workdir / "ready").glob("*.json")))

    def _serve(self) -> None:
        while not self._stop.is_set() and self.booted < self.wanted:
            if self._ready() >= AHEAD:
                self._stop.wait(0.2)
                continue
            try:
                self._boot()
            except Exception as exc:  # the cells boot their own, as without spares
                self.errors.append(repr(exc)[:300])
                if len(self.errors) >= 3:
                    return

    def _boot(self) -> None:
        from lab.services.rabbitmq import RabbitMQServer
        node_id = f"n{self.booted + 1:03d}"
        server = RabbitMQServer(self.workdir / node_id)
        server.owner = self.owner
        with self._lock:
            if self._stop.is_set():
                return
            self.nodes[node_id] = server
        t0 = time.monotonic()
        server.start()
        if self._stop.is_set():  # closed while it booted
            self._discard(node_id)
            return
        server.prepare(NAMESPACE)
        self.booted += 1
        info = {"id": node_id, "workdir": str(server.workdir), "port": server.port,
                "dist_port": server.dist_port, "epmd_port": server.epmd_port, "nodename": server.nodename,
                "version": server.version, "pid": server.proc.pid, "epmd_pid": server.epmd_proc.pid,
                "plugins_dir": str(server.plugins_dir or ""), "owner": self.owner, "vhost": NAMESPACE,
                "boot_s": round(time.monotonic() - t0, 2), "notes": list(server.notes)}
        tmp = self.workdir / f".{node_id}.json"
        tmp.write_text(json.dumps(info))
        os.rename(tmp, self.workdir / "ready" / f"{node_id}.json")

    def release(self, cell_dir: Path) -> None:
        """Kill and reap the nodes the cell under `cell_dir` claimed."""
        for path in Path(cell_dir).rglob("spare-n*.json"):
            self._discard(path.stem.removeprefix("spare-"))

    def _discard(self, node_id: str) -> None:
        with self._lock:
            server = self.nodes.pop(node_id, None)
        if server is not None:
            try:
                server.stop(graceful=False)  # reaps the Popen; a node the cell killed is a zombie until now
            except Exception:
                pass

    def close(self) -> None:
        """Stop booting and kill every node this process booted; returns within about 2 s. A boot
        still under way ends on the booter thread, which kills its node once it answers (and the
        kernel kills it with this process: lab.lifetime)."""
        self._stop.set()
        for node_id in list(self.nodes):
            self._discard(node_id)
        self._thread.join(timeout=2)
        for node_id in list(self.nodes):  # registered while the first pass ran
            self._discard(node_id)


