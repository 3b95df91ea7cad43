"""RabbitMQ nodes booted ahead by the runner and handed, idle, to the cells that own their broker.

Why. A broker-fault cell on RabbitMQ needs a node of its own to restart, pause
and cut (lab.services.nemesis), and booting one takes about 5 s and 4 CPU-s
(RabbitMQ 3.10.8 on this 2-core host, plugins trimmed; up to 9.6 CPU-s when
the host is slow, lab.hostspeed) per attempt: 33 boots in the default matrix
of 2026-12-02, 239 s of the 336 s of lab cost in its cells' time (issue 15);
21 attempts since 2026-12-04. A production worker also connects to a broker
that was up before it, so booting the node before the cell starts changes
nothing the worker sees; the second boot of a restart stays inside the
fault, in the cell.

Contract.
- Runner: `SpareNodes(workdir, wanted)` boots nodes on one thread, at most
  AHEAD ready and unclaimed at a time, until `wanted` (the planned attempts
  of RabbitMQ broker-fault cells) were booted, each with vhost NAMESPACE
  made by the blank node at its first boot (`boot_vhost`: no rabbitmqctl
  call), and writes `<workdir>/ready/<id>.json` once a node answers. Its
  processes carry the runner's token + "/spares/<id>" (the run's sweep
  finds them, a cell's does not) and die with the runner (lab.lifetime).
  `release(cell_dir)` kills and reaps the nodes the cell claimed (the cell
  has usually killed them already); `close()` stops the booter and kills
  every node; both return nothing and never raise.
- Cell: `claim(spares_dir, into)` renames one ready file into claimed/ (an
  atomic rename: two cells never get the same node), leaves a copy in `into`
  and returns its handover dict, or None when none is ready (the cell then
  boots its own, as before). `adopt(info)` is a RabbitMQServer driving that node:
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
import uuid
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
        """None while the process runs; else -SIGKILL (its true status goes to its parent)."""
        if self.returncode is None:
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    self.returncode = -signal.SIGKILL
            except psutil.NoSuchProcess:
                self.returncode = -signal.SIGKILL
            except psutil.Error:
                pass  # unreadable: still running as far as we can tell
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process has ended, polling every 50 ms; `timeout` in seconds (None:
        forever). Raises subprocess.TimeoutExpired when it is still running at the deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


def claim(spares_dir: str | Path | None, into: Path) -> dict[str, Any] | None:
    """One ready node for the calling cell: its handover dict (ports, node name, pids, owner
    token, boot seconds), or None when none is ready or `spares_dir` is None/absent. The ready
    file is renamed into `spares_dir`/claimed/ (atomic, one filesystem: two cells never get
    the same node) and a copy is written into `into` (the attempt's broker dir, created), where
    the runner's `release` finds it. A node found dead is skipped."""
    ready = Path(spares_dir) / "ready" if spares_dir else None
    if ready is None or not ready.is_dir():
        return None
    claimed = ready.parent / "claimed"
    claimed.mkdir(exist_ok=True)
    for path in sorted(ready.glob("*.json")):
        target = claimed / path.name
        try:
            os.rename(path, target)
        except OSError:
            continue  # another cell took it first
        try:
            info = json.loads(target.read_text())
        except (OSError, ValueError):
            continue
        into.mkdir(parents=True, exist_ok=True)
        (into / f"spare-{path.name}").write_text(json.dumps(info))
        if Adopted(info["pid"]).poll() is None:
            return info
    return None


def adopt(info: dict[str, Any]):
    """A RabbitMQServer driving the handed-over node `info` (from `claim`): its ports, node name,
    cookie and mnesia dir; stop/start/discard work as on a node the caller booted. Raises
    ServiceError when the node does not answer (the caller then boots its own)."""
    from lab.services.rabbitmq import RabbitMQServer
    # boot_vhost: the same rabbitmq.conf on a restart (the node made the vhost at its first boot)
    server = RabbitMQServer(Path(info["workdir"]), boot_vhost=info["vhost"])
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
    """The runner's side: boots up to `wanted` nodes (the planned attempts of RabbitMQ
    broker-fault cells), AHEAD at a time, under `workdir` (a dir this process owns and removes);
    `dir` is what a cell's spec carries. Never raises from its thread: boot errors are kept in
    `errors` (after 3 it stops, and the cells boot their own)."""

    def __init__(self, workdir: Path, wanted: int) -> None:
        self.workdir, self.wanted = Path(workdir), wanted
        (self.workdir / "ready").mkdir(parents=True, exist_ok=True)
        self.owner = spare_token(owner_token())
        self.tag = uuid.uuid4().hex[:6]     # node ids never repeat across runs (a resumed cell's old files)
        self.nodes: dict[str, Any] = {}      # id -> RabbitMQServer booted by this process and ready
        self.booting: Any = None             # the RabbitMQServer being booted now
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

    def forgo(self, attempts: int = 1) -> None:
        """`attempts` fewer nodes are wanted: a cell started with none ready, so its first attempt
        boots its own (without this, a matrix of only such cells, all started at once, had the
        booter boot nodes nobody claimed beside the cells' own boots: 30-35 s cells instead of 20 s)."""
        with self._lock:
            self.wanted -= attempts

    def has_ready(self) -> bool:
        return self._ready() > 0

    def _serve(self) -> None:
        attempt = 0
        while not self._stop.is_set() and self.booted < self.wanted:
            if self._ready() >= AHEAD:
                self._stop.wait(0.2)
                continue
            attempt += 1
            try:
                self._boot(f"{self.tag}-n{attempt:03d}")
            except Exception as exc:  # the cells boot their own, as without spares
                self.errors.append(repr(exc)[:300])
                if len(self.errors) >= 3:
                    return

    def _boot(self, node_id: str) -> None:
        from lab.services.rabbitmq import RabbitMQServer
        server = RabbitMQServer(self.workdir / node_id, boot_vhost=NAMESPACE)
        server.owner = child_token(self.owner, node_id)  # only this node's processes
        with self._lock:
            if self._stop.is_set():
                return
            self.booting = server
        t0 = time.monotonic()
        try:
            server.start()
            if not self._stop.is_set():
                server.prepare(NAMESPACE)
        except BaseException:
            server.stop(graceful=False)
            raise
        finally:
            with self._lock:
                self.booting = None
        with self._lock:
            if self._stop.is_set():  # closed while it booted
                server.stop(graceful=False)
                return
            self.nodes[node_id] = server
        self.booted += 1
        info = {"id": node_id, "workdir": str(server.workdir), "port": server.port,
                "dist_port": server.dist_port, "epmd_port": server.epmd_port, "nodename": server.nodename,
                "version": server.version, "pid": server.proc.pid, "epmd_pid": server.epmd_proc.pid,
                "plugins_dir": str(server.plugins_dir or ""), "owner": server.owner, "vhost": NAMESPACE,
                "boot_s": round(time.monotonic() - t0, 2), "notes": list(server.notes)}
        tmp = self.workdir / f".{node_id}.json"
        tmp.write_text(json.dumps(info))
        os.rename(tmp, self.workdir / "ready" / f"{node_id}.json")

    def release(self, cell_dir: Path) -> None:
        """Kill and reap the nodes of this run that the cell under `cell_dir` claimed (SIGKILL,
        up to ~5 s per node; the cell has usually killed them already). Never raises."""
        for path in Path(cell_dir).rglob("spare-*.json"):
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
        """Stop booting and kill every node this process booted. A boot under way is cut (its
        node SIGKILLed, so its start fails at the next check) and awaited up to 15 s. Never raises."""
        self._stop.set()
        with self._lock:
            booting = self.booting
        if booting is not None and getattr(booting, "proc", None) is not None:
            try:
                os.killpg(booting.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._thread.join(timeout=15)
        for node_id in list(self.nodes):
            self._discard(node_id)


def spare_token(runner_token: str) -> str:
    """The LAB_OWNER of the spare nodes of the runner whose token is `runner_token`."""
    return child_token(runner_token, "spares")
