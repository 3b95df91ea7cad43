"""A cell's own broker server, and the hands that stop, start, pause and cut it.

Contract: `unavailable_reason(broker, fault)` says why a fault cannot be
delivered to this broker kind / provider (None: it can), without starting
anything. `provision(broker, fault, workdir)` starts a *dedicated* server in
the calling (cell) process with the lab's own service classes — never one
shared with other cells — and returns a Nemesis that owns it; `close()`
stops it (idempotent; register it as a cleanup). `Nemesis.apply(plan)`
carries a lab.faults.broker.FaultPlan out and returns what happened, with
monotonic times: `fault_mono` (the fault began) and `back_mono` (the broker
answers again), `down_s`, and the fault's own facts (clients killed, pids
paused, the new primary). Every signal is sent only to a pid the lab started
(the service's own process tree, carrying this process's LAB_OWNER token)
and never to a server on a default port; anything else raises
NemesisRefused (a lab error, never a finding).

Per server (local and embedded providers; a URL server is the user's and a
container has no nemesis yet, so those are n/a with the reason):
  Redis       stop/start = redis-server on the same port (no persistence:
              it comes back empty); pause = SIGSTOP/SIGCONT; drop = CLIENT
              KILL TYPE normal; failover = primary + replica + redis-server
              --sentinel (lab.services.sentinel), the primary SIGKILLed.
  every kind  outage-reset: while down, lab.services.reset_listener holds the
              port and resets every connection.
  RabbitMQ    stop/start = the lab's node (mnesia kept: durable queues
              survive); pause = SIGSTOP/SIGCONT of the node's process tree;
              drop = rabbitmqctl -n <node> close_all_connections.
  PostgreSQL  stop/start = fast shutdown and relaunch of the lab's cluster;
              pause = SIGSTOP/SIGCONT of the postmaster and its backends;
              drop = pg_terminate_backend of the cell database's sessions.
  SQLite      no server: every fault n/a.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from lab.faults.broker import SENTINEL_MASTER, BrokerFault, FaultPlan
from lab.reaper import OWNER_ENV, owner_token, owns
from lab.services import BROKER_SERVER, URL_ENV, choose_provider, make_service
from lab.services.base import Service, ServiceError, stop_process, wait_until
from lab.services import spares
from lab.waits import hold

DEFAULT_PORTS = {6379, 26379, 5672, 15672, 25672, 4369, 5432, 3306}
NAMESPACE = "broker_fault"


class NemesisRefused(ServiceError):
    """The lab refused to touch a process it does not own (a lab failure)."""


def unavailable_reason(broker: str, fault: BrokerFault | str, provider: str | None = None) -> str | None:
    fault = BrokerFault(fault)
    kind = BROKER_SERVER[broker]
    if kind == "sqlite":
        return ("kombu's SQLAlchemy transport on SQLite reads a file: there is no broker server to "
                "stop, pause or cut")
    if fault is BrokerFault.FAILOVER and kind != "redis":
        return f"failover is Redis Sentinel's; {broker} has no Sentinel"
    chosen = choose_provider(kind, provider)
    if chosen == "url":
        return (f"the {kind} server is the user's ({URL_ENV.get(kind)}): the lab does not own it and never "
                "stops, pauses or cuts it")
    if chosen == "container":
        return f"broker faults need a {kind} the lab runs as a local process (LAB_PROVIDER=local)"
    if fault is BrokerFault.FAILOVER:
        from lab.services.redis import find_redis_binary
        if not find_redis_binary():
            return "no redis-server binary: Sentinel (redis-server --sentinel) is missing"
    return None


def provision(broker: str, fault: BrokerFault | str, workdir: Path,
              spares_dir: str | Path | None = None) -> "Nemesis":
    """The cell's own server for `broker`, started (or, for a local RabbitMQ, a node the runner
    booted ahead, claimed from `spares_dir`: lab.services.spares), with NAMESPACE prepared.
    Raises ServiceError when the fault cannot be delivered to this broker or the server does
    not start."""
    fault = BrokerFault(fault)
    reason = unavailable_reason(broker, fault)
    if reason:
        raise ServiceError(reason)
    kind, provider = BROKER_SERVER[broker], choose_provider(BROKER_SERVER[broker])
    service = None
    info = spares.claim(spares_dir, Path(workdir)) if kind == "rabbitmq" and provider == "local" else None
    if info is not None:
        try:
            service = spares.adopt(info)
        except ServiceError:
            pass  # it does not answer: boot our own, as without spares
    handed = service is not None
    if service is None:
        service = make_service(kind, Path(workdir) / kind, provider)
        if getattr(service, "boot_vhost", False) is None:  # a local RabbitMQ makes NAMESPACE at its boot
            from lab.services.rabbitmq import vhost_name
            service.boot_vhost = vhost_name(NAMESPACE)
    nemesis = Nemesis(broker, service, Path(workdir))
    try:
        if not handed:
            service.start()
        service.prepare(NAMESPACE)
        if fault is BrokerFault.FAILOVER:
            nemesis.start_sentinel_pair()
    except BaseException:
        nemesis.close()
        raise
    return nemesis


def keep_logs(node_dir: Path, into: Path) -> None:
    """Copy a handed-over node's logs (its dir is the runner's, removed at the run's end) into
    the cell's workdir, so its evidence stays with the run. Best effort."""
    import shutil
    try:
        into.mkdir(parents=True, exist_ok=True)
        for path in [*node_dir.glob("*.log"), *(node_dir / "log").glob("*.log")]:
            shutil.copy2(path, into / path.name)
    except OSError:
        pass


def _pid_of(proc) -> int | None:
    return proc.pid if proc is not None and proc.poll() is None else None


class Nemesis:
    def __init__(self, broker: str, service: Service, workdir: Path):
        self.broker, self.service, self.workdir = broker, service, workdir
        self.replica: Service | None = None
        self.pair = None                      # lab.services.sentinel.SentinelPair (failover only)
        self.sentinel_port = 0
        self.paused: list[int] = []
        self.log: list[dict[str, Any]] = []   # fault entries, like WorkerController.faults

    # -- urls ------------------------------------------------------------
    @property
    def broker_url(self) -> str:
        if self.pair is not None:
            return f"sentinel://127.0.0.1:{self.sentinel_port}/0"
        return self.service.url_for(NAMESPACE, "broker")

    def backend_url(self, backend: str) -> str | None:
        """The result backend on this same server, or None if this server cannot hold `backend`."""
        if backend == "redis" and self.service.kind == "redis":
            return (f"sentinel://127.0.0.1:{self.sentinel_port}/1" if self.pair is not None
                    else self.service.url_for(NAMESPACE, "backend"))
        if backend == "postgres" and self.service.kind == "postgres":
            return self.service.url_for(NAMESPACE, "backend")
        return None

    @property
    def transport_options(self) -> dict[str, Any]:
        return {"master_name": SENTINEL_MASTER} if self.pair is not None else {}

    def describe(self) -> dict[str, Any]:
        out = {"broker": self.broker, "server": self.service.describe(), "dedicated": True,
               "pids": self.server_pids()}
        if self.replica is not None:
            out.update(replica=self.replica.describe(), sentinel_port=self.sentinel_port)
        return out

    # -- ownership -------------------------------------------------------
    def server_pids(self, service: Service | None = None) -> list[int]:
        """The pids of the server process tree (our Popen and its descendants)."""
        service = service or self.service
        root = _pid_of(getattr(service, "proc", None))
        if root is None:
            return []
        try:
            return [root] + [c.pid for c in psutil.Process(root).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _check_owned(self, pids: list[int], service: Service) -> None:
        """Each pid carries our LAB_OWNER (or, for a node handed over by our runner, the token
        that runner gave its spare nodes: lab.services.spares), or is the server we spawned (our
        own child) or one of its descendants (PostgreSQL backends overwrite their environ with
        the process title)."""
        if service.port in DEFAULT_PORTS or not pids:
            raise NemesisRefused(f"refusing to signal {service.kind} on port {service.port} (pids {pids})")
        token = owner_token()
        handed = getattr(service, "handed_owner", None)
        if handed and handed.rpartition("/")[0] != spares.spare_token(token.rpartition("/")[0]):
            raise NemesisRefused(f"handed-over node's owner {handed!r} is not our runner's spare token "
                                 f"(ours {token!r})")
        root = _pid_of(getattr(service, "proc", None))
        tree: set[int] = set()
        try:
            if root is not None and psutil.Process(root).ppid() == os.getpid():
                tree = {root} | {c.pid for c in psutil.Process(root).children(recursive=True)}
        except psutil.Error:
            pass
        for pid in pids:
            try:
                value = psutil.Process(pid).environ().get(OWNER_ENV)
            except psutil.NoSuchProcess:
                continue  # gone already
            except psutil.Error:
                value = None  # unreadable: ours only if it is in our server's tree
            if not owns(token, value) and not (handed and owns(handed, value)) and pid not in tree:
                raise NemesisRefused(f"pid {pid} is not the lab's (LAB_OWNER={value!r}, ours {token!r}; "
                                     f"not a descendant of our server pid {root})")

    def _signal(self, sig: int, pids: list[int], service: Service) -> list[int]:
        self._check_owned(pids, service)
        sent = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                sent.append(pid)
            except ProcessLookupError:
                pass
        return sent

    def _entry(self, kind: str, **fields) -> dict[str, Any]:
        entry = {"kind": kind, "mono": time.monotonic(), "wall": time.time(), "worker": "broker", **fields}
        self.log.append(entry)
        return entry

    # -- primitive acts --------------------------------------------------
    def stop(self) -> None:
        self._entry("broker-stop", server=self.service.kind, port=self.service.port)
        if self.service.kind == "postgres":
            self.service._halt()          # keep the cluster (stop() would remove it)
        else:
            self.service.stop()

    def start(self) -> None:
        if self.service.kind == "postgres":
            self.service._launch()
        else:
            self.service.start()          # same port: start() keeps self.port
        self._entry("broker-start", server=self.service.kind, port=self.service.port)

    def pause(self) -> list[int]:
        self.paused = self._signal(signal.SIGSTOP, self.server_pids(), self.service)
        self._entry("broker-pause", pids=self.paused)
        return self.paused

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT, self.paused, self.service)
            self._entry("broker-resume", pids=self.paused)
        self.paused = []

    def drop_connections(self) -> str:
        kind = self.service.kind
        if self.service.port in DEFAULT_PORTS:
            raise NemesisRefused(f"refusing to cut connections on port {self.service.port}")
        if kind == "redis":
            from lab.services.redis import redis_command
            reply = redis_command("127.0.0.1", self.service.port, "CLIENT", "KILL", "TYPE", "normal")
            detail = f"CLIENT KILL TYPE normal: {reply.decode(errors='replace').strip()} client(s)"
        elif kind == "rabbitmq":
            self.service.ctl("close_all_connections", "lab broker-fault drop-connections")
            detail = f"rabbitmqctl -n {self.service.nodename} close_all_connections"
        elif kind == "postgres":
            from lab.services.postgres import db_name
            killed = self.service.sql("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                      f"where datname = '{db_name(NAMESPACE)}' and pid <> pg_backend_pid()")
            detail = f"pg_terminate_backend: {killed} session(s)"
        else:
            raise ServiceError(f"{kind}: no connections to drop")
        self._entry("broker-drop-connections", detail=detail)
        return detail

    # -- sentinel --------------------------------------------------------
    def start_sentinel_pair(self) -> None:
        from lab.services.sentinel import SentinelPair
        self.pair = SentinelPair(self.service, self.workdir).start()
        self.replica, self.sentinel_port = self.pair.replica, self.pair.port

    def master_addr(self) -> tuple[str, int] | None:
        return self.pair.master_addr() if self.pair else None

    def failover(self, bound: float = 30.0) -> dict[str, Any]:
        old = self.service
        pids = self.server_pids(old)
        self._signal(signal.SIGKILL, pids, old)
        self._entry("broker-kill-primary", pids=pids, port=old.port)
        fault = time.monotonic()
        wait_until(lambda: self.master_addr() == ("127.0.0.1", self.replica.port), bound,
                   interval=0.1, what="sentinel promoting the replica")
        back = time.monotonic()
        self._entry("broker-promoted", port=self.replica.port)
        stop_process(old.proc)
        old.proc = None
        return {"fault_mono": fault, "back_mono": back, "new_primary_port": self.replica.port,
                "old_primary_port": old.port, "killed_pids": pids}

    # -- the fault -------------------------------------------------------
    def apply(self, plan: FaultPlan) -> dict[str, Any]:
        fault = plan.fault
        out: dict[str, Any] = {"fault": fault.value, "server": self.service.kind}
        if fault is BrokerFault.FAILOVER:
            out.update(self.failover())
        elif fault is BrokerFault.DROP_CONNECTIONS:
            out["fault_mono"] = time.monotonic()
            out["detail"] = self.drop_connections()
            out["back_mono"] = time.monotonic()
        elif fault is BrokerFault.FLAP:
            from lab.faults.broker import FLAP_GAP_S, FLAP_TIMES
            out["fault_mono"] = time.monotonic()
            for index in range(FLAP_TIMES):
                if index:
                    hold(FLAP_GAP_S)
                self.stop()
                self.start()
            out["back_mono"] = time.monotonic()
            out["restarts"] = FLAP_TIMES
        elif fault is BrokerFault.BLACKHOLE:
            out["fault_mono"] = time.monotonic()
            out["paused_pids"] = self.pause()
            hold(plan.down_s)
            self.resume()
            out["back_mono"] = time.monotonic()
        else:  # restart, outage-short, outage-long, outage-reset
            out["fault_mono"] = time.monotonic()
            self.stop()
            stopped = time.monotonic()
            resetter = None
            if fault is BrokerFault.OUTAGE_RESET:
                from lab.services.reset_listener import ResettingListener
                if self.service.port in DEFAULT_PORTS:
                    raise NemesisRefused(f"refusing to listen on default port {self.service.port}")
                resetter = ResettingListener(self.service.port)
            hold(max(0.0, plan.down_s - (stopped - out["fault_mono"])))
            if resetter is not None:
                out["connections_reset"] = resetter.close()
                self._entry("broker-reset-listener", port=self.service.port, reset=out["connections_reset"])
            self.start()
            out["back_mono"] = time.monotonic()
            out["stop_s"] = round(stopped - out["fault_mono"], 3)
        out["down_s"] = round(out["back_mono"] - out["fault_mono"], 3)
        return out

    def close(self) -> None:
        """The cell's end: resume a paused server, stop the Sentinel pair, then discard the
        primary (`Service.discard`: a kill for RabbitMQ, a stop for the others). Best effort:
        every error is swallowed, since the cell's owner sweep ends whatever is left."""
        try:
            self.resume()
        except ServiceError:
            pass
        if self.pair is not None:
            self.pair.close()           # sentinel, then the replica
        try:
            self.service.discard()      # the primary (after a failover: the old one, already down)
        except Exception:
            pass
        if getattr(self.service, "handed_owner", None) and self.service.workdir:
            keep_logs(Path(self.service.workdir), self.workdir / "rabbitmq-logs")
