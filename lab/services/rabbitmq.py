"""RabbitMQ on free loopback ports: a private node from the installed rabbitmq-server.

Contract: `RabbitMQServer(workdir).start()` runs its own epmd (ERL_EPMD_PORT, a
free port) and a node `lab-<port>@localhost` whose AMQP listener, distribution
port and epmd are bound to 127.0.0.1, with mnesia, logs, config, cookie
(HOME) and an empty plugin list all in `workdir`; /etc/rabbitmq is ignored, so
the machine's own node (5672/4369) is neither used nor disturbed. Its plugins
dir holds the installed core applications only (`trimmed_plugins_dir`). It returns
once the port answers an AMQP protocol header with a connection.start whose
cluster_name is our node name (a stranger on the port never passes). The
unwrapped scripts in /usr/lib/rabbitmq/bin are used: the Debian /usr/sbin
wrappers `su rabbitmq` when run as root, and the node itself runs fine as root.
`prepare(namespace)` adds vhost <namespace> (sanitised to [A-Za-z0-9_.-]) and
gives guest full rights on it (idempotent, thread-safe); only the role
"broker" exists. `prepare_many(namespaces)` does so for many in one call.
Each `rabbitmqctl` call boots an Erlang VM: ~1.0-1.4 CPU-s and ~1 s here
(RabbitMQ 3.10.8). `RabbitMQServer(workdir, boot_vhost=NS)` has a blank node
make vhost NS itself at its first boot (rabbitmq.conf `default_vhost` and
`default_permissions`: guest with full rights), so `prepare(NS)` needs no
call; such a node has no `/` vhost, which the lab never uses. A node started
on a data dir that is not blank ignores the setting, so NS then counts as
made only if an earlier start of this object made it.
`stop()` stops the node (TERM, then KILL), then everything it
spawned (erl_child_setup and inet_gethost sit in sessions of their own) and
its epmd. The script execs the Erlang VM (RUNNING_UNDER_SYSTEMD), so the
node itself dies with the lab process that started it. `restart()` keeps the
ports and the data (vhosts, durable queues).
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import socket
import string
import struct
import subprocess
import threading
import time
from pathlib import Path

import psutil

from lab.services.base import (Service, ServiceError, free_port, log_tail, port_open,
                               spawn_server, stop_process, wait_until)

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def find_rabbit_bindir() -> Path | None:
    """A directory with the unwrapped rabbitmq-server and rabbitmqctl scripts."""
    candidates = [Path("/usr/lib/rabbitmq/bin")]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"))]
    if shutil.which("rabbitmq-server"):
        candidates.append(Path(os.path.realpath(shutil.which("rabbitmq-server"))).parent)
    for bindir in candidates:
        script = bindir / "rabbitmq-server"
        if script.exists() and (bindir / "rabbitmqctl").exists() \
                and "su rabbitmq" not in script.read_text(errors="replace"):
            return bindir
    return None


def find_epmd() -> str | None:
    found = shutil.which("epmd") or sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def vhost_name(namespace: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", namespace) or "lab"


def amqp_handshake(host: str, port: int, timeout: float = 2.0, expect: bytes = b"") -> bool:
    """Send the AMQP 0-9-1 protocol header; True if the reply is connection.start
    (and its server properties contain `expect`, e.g. our node's cluster_name)."""
    return amqp_server_properties(host, port, timeout, expect) is not None


def amqp_server_properties(host: str, port: int, timeout: float = 2.0, expect: bytes = b"") -> bytes | None:
    """The raw connection.start frame the server answers the protocol header with (None: no
    AMQP 0-9-1 server there, or `expect` is not in its server properties)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(AMQP_HEADER)
            blob = b""
            while len(blob) < 11 or len(blob) < 8 + struct.unpack(">I", blob[3:7])[0]:
                data = sock.recv(4096)
                if not data:
                    return None
                blob += data
    except OSError:
        return None
    frame_type, channel, _size, class_id, method_id = struct.unpack(">BHIHH", blob[:11])
    return blob if (frame_type, channel, class_id, method_id) == (1, 0, 10, 10) and expect in blob else None


def server_version(frame: bytes) -> str:
    """The `version` server property of a connection.start frame ('' when absent): the node's
    RabbitMQ version without a rabbitmqctl call (each one boots an Erlang VM: ~1 CPU-s)."""
    at = frame.find(b"\x07versionS")
    if at < 0:
        return ""
    (size,) = struct.unpack(">I", frame[at + 9:at + 13])
    return frame[at + 13:at + 13 + size].decode(errors="replace")


# The Erlang VM's schedulers busy-wait by default; on a shared 2-core host that spin takes CPU
# the workers under test need (measured: a node's boot 6.3 -> 5.1 CPU-s). RabbitMQ's runtime
# guide names these flags for shared hosts; they change no AMQP behaviour. Recorded per node.
ERL_SCHEDULER_FLAGS = "+sbwt none +sbwtdcpu none +sbwtdio none"
PLUGINS_NOTE = ("plugins dir: the installed one without its rabbitmq_* plugins (none is enabled either way; "
                "the node no longer reads their schemas at boot: 6.1 -> 5.0 s, 4.9 -> 4.1 CPU-s per boot)")


def trimmed_plugins_dir(bindir: Path, into: Path) -> Path | None:
    """`into`, filled with symlinks to the installed plugins dir's applications except the
    optional rabbitmq_* plugins (rabbitmq_prelaunch, which boots the node, stays); None when
    the installed dir is not found (the node then uses its default). RabbitMQ's prelaunch
    reads every available plugin's config schema before it logs anything (RabbitMQ 3.10.8,
    measured: its first log line came 1.7 s after the spawn instead of 3.1 s; the boot as a
    whole 6.1 -> 5.0 s); with no plugin enabled, none of them is needed. Measured on 3.10.8
    only: a release whose boot needs another rabbitmq_* application fails to start, and the
    node's log says which. An OSError while linking also gives None."""
    script = Path(os.path.realpath(bindir / "rabbitmq-server"))
    source = script.parent.parent / "plugins"
    if not source.is_dir():
        return None
    try:
        into.mkdir(parents=True, exist_ok=True)
        for app in source.iterdir():
            keep = not app.name.startswith("rabbitmq_") or app.name.startswith("rabbitmq_prelaunch")
            link = into / app.name
            if keep and app.name != "README" and not link.exists():
                link.symlink_to(app)
    except OSError:
        return None
    return into


def grant_expr(vhosts: list[str]) -> str:
    """The `rabbitmqctl eval` expression that awaits the node's start-up, adds each of `vhosts`
    (already sanitised by vhost_name) and gives guest full rights on it, answering `ok`
    (rabbit:await_startup, rabbit_vhost:add, rabbit_auth_backend_internal:set_permissions:
    RabbitMQ 3.8+; a vhost that exists is added again without error). A failed step is a
    badmatch, so the call fails instead of answering ok."""
    names = ", ".join(f'<<"{v}">>' for v in vhosts)
    return ('rabbit:await_startup(), [begin ok = rabbit_vhost:add(V, <<"lab">>), '
            'ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, V, <<".*">>, <<".*">>, '
            f'<<".*">>, <<"lab">>) end || V <- [{names}]], ok.')


class VhostNamespaces:
    """A vhost per namespace; shared by the local and container providers
    (they provide `ctl`, `_lock`, `host` and `port`)."""

    def prepare(self, namespace: str) -> None:
        """Vhost <namespace> with full rights for guest: one `rabbitmqctl eval` of grant_expr
        (it awaits the node's start-up: the AMQP listener answers before the rabbit app reports
        started), tried 3 times 1 s apart;
        else the commands it stands for. A vhost made before on this node (`prepared`) is not made
        again. Raises ServiceError when neither works."""
        vhost = vhost_name(namespace)
        prepared = self.__dict__.setdefault("prepared", set())  # made already: a restart keeps mnesia
        with self._lock:
            if vhost in prepared:
                return
            expr = grant_expr([vhost])
            for attempt in range(3):
                try:
                    if self.ctl("eval", expr).strip() == "ok":
                        prepared.add(vhost)
                        return
                except ServiceError:
                    pass
                time.sleep(1.0)
            self.ctl("await_startup")
            if vhost not in self.ctl("list_vhosts", "--quiet", "--no-table-headers").split():
                self.ctl("add_vhost", vhost)
            self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            prepared.add(vhost)

    def prepare_many(self, namespaces: list[str]) -> None:
        """Vhosts for every one of `namespaces` in one `rabbitmqctl eval` of grant_expr (each call
        boots an Erlang VM: ~1.2 CPU-s and ~1 s), as `prepare` makes one: the runner's shared node gets the vhosts
        of all the run's RabbitMQ cells at its start. Raises ServiceError when the call fails (the
        cells then prepare their own, one call each)."""
        with self._lock:
            prepared = self.__dict__.setdefault("prepared", set())
            vhosts = sorted({vhost_name(n) for n in namespaces} - prepared)
            if not vhosts:
                return
            if self.ctl("eval", grant_expr(vhosts)).strip() != "ok":
                raise ServiceError("rabbitmqctl eval of the run's vhosts did not answer ok")
            prepared.update(vhosts)

    def url_for(self, namespace: str, role: str = "broker") -> str:
        if role != "broker":
            raise ServiceError(f"rabbitmq is a broker only, not a {role!r}")
        return f"amqp://guest:guest@{self.host}:{self.port}/{vhost_name(namespace)}"


class RabbitMQServer(VhostNamespaces, Service):
    def __init__(self, workdir: Path, bindir: Path | None = None, boot_vhost: str | None = None):
        bindir = bindir or find_rabbit_bindir()
        epmd = find_epmd()
        if not bindir or not epmd:
            raise ServiceError("no rabbitmq-server/rabbitmqctl scripts or epmd found "
                               "(apt-get install rabbitmq-server)")
        super().__init__(kind="rabbitmq", provider="local", workdir=workdir)
        self.bindir, self.epmd = Path(bindir), epmd
        self.dist_port = self.epmd_port = 0
        self.nodename = ""
        self.proc: subprocess.Popen | None = None
        self.epmd_proc: subprocess.Popen | None = None
        self.spawned: list[psutil.Process] = []
        self.plugins_dir: Path | None = None
        self._lock = threading.Lock()          # cells prepare concurrently
        self.prepared: set[str] = set()        # vhosts made (kept across restarts: mnesia stays)
        self.boot_vhost = vhost_name(boot_vhost) if boot_vhost else None  # made by the blank node itself
        self.owner: str | None = None          # LAB_OWNER of the processes start() spawns (None: ours)
        self.handed_owner: str | None = None   # LAB_OWNER of a node handed over (lab.services.spares)

    def start(self) -> "RabbitMQServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.dist_port = self.dist_port or free_port()
        self.epmd_port = self.epmd_port or free_port()
        self.nodename = f"lab-{self.port}@localhost"
        self.log_path = self.workdir / "rabbitmq.log"
        blank = not any((self.workdir / "mnesia").glob("*/*"))  # no node data yet: default_vhost applies
        self._write_files()
        self.plugins_dir = trimmed_plugins_dir(self.bindir, self.workdir / "plugins")
        self.epmd_proc = spawn_server([self.epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                      self.workdir / "epmd.log", env=self.env, cwd=self.workdir,
                                      owner=self.owner)
        self.proc = spawn_server([str(self.bindir / "rabbitmq-server")], self.log_path,
                                 env=self.env, cwd=self.workdir, owner=self.owner)
        try:
            wait_until(lambda: self._alive() and port_open(self.host, self.epmd_port), timeout=10,
                       what=f"epmd on port {self.epmd_port}")
            wait_until(lambda: self._alive() and self.answers(), timeout=90,
                       interval=0.2, what=f"rabbitmq node {self.nodename} on port {self.port}")
            self.spawned = self._descendants()
            if self.boot_vhost and blank:  # made with guest's rights before the listener opened
                self.prepared.add(self.boot_vhost)
            frame = amqp_server_properties(self.host, self.port, expect=self.nodename.encode()) or b""
            self.version = server_version(frame) or self.ctl("version").strip().splitlines()[-1]
            for note in [f"Erlang VM flags {ERL_SCHEDULER_FLAGS} (no scheduler busy-wait; AMQP unchanged)"] + (
                    [PLUGINS_NOTE] if self.plugins_dir else []):
                if note not in self.notes:
                    self.notes.append(note)
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"{exc}\n{log_tail(self.log_path)}") from None
        return self

    def answers(self) -> bool:
        """Our node (not whatever else holds the port) completes an AMQP header exchange."""
        return amqp_handshake(self.host, self.port, expect=self.nodename.encode())

    @property
    def env(self) -> dict:
        w = self.workdir
        return {
            "HOME": str(w), "RABBITMQ_NODENAME": self.nodename, "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"), "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            **({"RABBITMQ_PLUGINS_DIR": str(self.plugins_dir)} if self.plugins_dir else {}),
            "RABBITMQ_PID_FILE": str(w / "rabbitmq.pid"),
            "RABBITMQ_CTL_DIST_PORT_MIN": "0", "RABBITMQ_CTL_DIST_PORT_MAX": "0",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} "
                                                   f"-start_epmd false {ERL_SCHEDULER_FLAGS}",
            "ERL_FLAGS": "", "ERL_AFLAGS": "", "ERL_ZFLAGS": "", "RABBITMQ_ALLOW_INPUT": "",
            # the script then execs the VM instead of forking it, so the parent-death signal
            # reaches beam.smp (it also stops on SIGTERM itself; no sd_notify without NOTIFY_SOCKET)
            "RUNNING_UNDER_SYSTEMD": "true",
        }

    def _write_files(self) -> None:
        w = self.workdir
        (w / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
                                         "log.console = false\nlog.file.level = info\n"
                                         "loopback_users.guest = true\n"
                                         f"cluster_name = {self.nodename}\n"
                                         + (f"default_vhost = {self.boot_vhost}\n"
                                            "default_permissions.configure = .*\n"
                                            "default_permissions.read = .*\n"
                                            "default_permissions.write = .*\n" if self.boot_vhost else ""))
        (w / "enabled_plugins").write_text("[].\n")
        (w / "rabbitmq-env.conf").write_text("# private lab node: /etc/rabbitmq is not read\n")
        cookie = w / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(20)))
            cookie.chmod(0o400)

    def _alive(self) -> bool:
        for proc, what in ((self.proc, "rabbitmq-server"), (self.epmd_proc, "epmd")):
            if proc and proc.poll() is not None:
                raise ServiceError(f"{what} exited with {proc.returncode}")
        return True

    def _descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except (psutil.NoSuchProcess, AttributeError):
            return []

    def ctl(self, *args: str, timeout: float = 60) -> str:
        argv = [str(self.bindir / "rabbitmqctl"), "-n", self.nodename, *args]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                    env={**os.environ, **self.env}, cwd=self.workdir)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} timed out") from None
        if result.returncode != 0:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-1500:]}")
        return result.stdout

    def discard(self) -> None:
        """SIGKILL the node (its graceful stop takes ~1 s, and at a cell's end nobody reads it)."""
        self.stop(graceful=False)

    def stop(self, graceful: bool = True) -> None:
        """Stop the node: SIGTERM and up to 15 s for it to end, then SIGKILL (only SIGKILL when
        not `graceful`); then SIGKILL whatever it spawned (erl_child_setup, inet_gethost, up to
        5 s) and stop its epmd. Keeps the ports and the mnesia dir, so start() is a restart."""
        spawned = self.spawned + self._descendants()
        stop_process(self.proc, timeout=15, graceful=graceful)
        self.proc = None
        leftovers = []
        for proc in spawned:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    leftovers.append(proc)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=5)
        self.spawned = []
        stop_process(self.epmd_proc)
        self.epmd_proc = None

