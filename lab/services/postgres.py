"""PostgreSQL on a free loopback port: a private cluster from the local binaries.

Contract: `PostgresServer(workdir).start()` runs initdb (trust auth, no
locale, UTF8) and then `postgres` bound to 127.0.0.1 on a free port, with
fsync off and its unix socket beside the data; it returns once psql connects
and the server reports our data directory (a stranger on the port never
passes). initdb and postgres refuse root, so as root both run as the
`postgres` system user (setgid/setuid in the child; the environment, hence
LAB_OWNER, is kept) in `workdir/pg`, chowned to it. If that user cannot reach
`workdir` (e.g. pytest's 0700 /tmp/pytest-of-root), the cluster lives in a
/tmp/lab-pg-* directory (with an owner.json, so a sweep removes it once its
owner is gone) linked from `workdir/pg`, which stop() removes. The server gets
its parent-death signal after dropping to that user (setuid clears it).
`prepare(namespace)` creates database <namespace> (sanitised to [a-z0-9_];
idempotent, thread-safe); roles map to kombu's `sqla+postgresql+psycopg2` (broker)
and Celery's `db+postgresql+psycopg2` (backend). `restart()` keeps the port and the data.
The machine's own PostgreSQL (5432) is never touched.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from lab.reaper import write_owner
from lab.services.base import (Service, ServiceError, free_port, log_tail, spawn_server,
                               stop_process, wait_until)

# The driver is named: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3.
SCHEMES = {"broker": "sqla+postgresql+psycopg2", "backend": "db+postgresql+psycopg2"}
RUN_AS = "postgres"


def find_pg_bindir() -> Path | None:
    """The directory holding initdb and postgres (one version), or None."""
    candidates = []
    if shutil.which("initdb"):
        candidates.append(Path(os.path.realpath(shutil.which("initdb"))).parent)
    key = lambda p: [int(x) for x in re.findall(r"\d+", p)]  # noqa: E731
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=key, reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def db_name(namespace: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", namespace.lower())[:63]
    return name or "lab"


def _demoter(user: str | None):
    """preexec_fn dropping root to `user` (None: stay as we are)."""
    if user is None:
        return None
    pw = pwd.getpwnam(user)

    def demote() -> None:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return demote


class PostgresNamespaces:
    """A database per namespace; shared by the local and container providers
    (they provide `sql`, `psql_run`, `_lock`, `host` and `port`)."""

    def prepare(self, namespace: str) -> None:
        name = db_name(namespace)
        with self._lock:
            if self.sql(f"select 1 from pg_database where datname = '{name}'") == "1":
                return
            result = self.psql_run(f'create database "{name}"')
            if result.returncode != 0 and "already exists" not in result.stderr:
                raise ServiceError(f"create database {name} failed: {result.stderr.strip()}")

    def url_for(self, namespace: str, role: str = "broker") -> str:
        if role not in SCHEMES:
            raise ServiceError(f"postgres has no role {role!r} (broker, backend)")
        return f"{SCHEMES[role]}://postgres@{self.host}:{self.port}/{db_name(namespace)}"


class PostgresServer(PostgresNamespaces, Service):
    def __init__(self, workdir: Path, bindir: Path | None = None):
        bindir = bindir or find_pg_bindir()
        if not bindir:
            raise ServiceError("no PostgreSQL binaries (initdb, postgres) on PATH or under "
                               "/usr/lib/postgresql/*/bin (apt-get install postgresql)")
        super().__init__(kind="postgres", provider="local", workdir=workdir)
        self.bindir = Path(bindir)
        psql = self.bindir / "psql"
        self.psql = str(psql) if psql.exists() else shutil.which("psql")
        if not self.psql:
            raise ServiceError("psql not found")
        self.user = RUN_AS if os.geteuid() == 0 else None
        self.proc: subprocess.Popen | None = None
        self.root: Path | None = None          # holds data/ and the socket
        self.external: Path | None = None      # set when root lives outside workdir
        self._lock = threading.Lock()          # cells prepare concurrently

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "PostgresServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.log_path = self.workdir / "postgres.log"
        self.root = self.root or self._make_root()
        data = self.root / "data"
        if not (data / "PG_VERSION").exists():
            self._run_as([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                          "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"], "initdb")
        self._launch()
        return self

    def _launch(self) -> None:
        sockdir = str(self.root)
        if len(sockdir) > 90:                 # sun_path is 108 bytes: TCP only then
            sockdir = ""
        argv = [str(self.bindir / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockdir}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "logging_collector=off"]
        self.proc = spawn_server(argv, self.log_path, cwd=self.root, preexec=_demoter(self.user))
        try:
            wait_until(self._ready, timeout=30, interval=0.1, what=f"postgres on port {self.port}")
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"{exc}\n{log_tail(self.log_path)}") from None
        self.version = self.sql("show server_version").split()[0]

    def _ready(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise ServiceError(f"postgres exited with {self.proc.returncode}")
        probe = self._psql("postgres", "show data_directory", timeout=5)  # ours, not a stranger
        return (probe.returncode == 0 and
                os.path.realpath(probe.stdout.strip()) == os.path.realpath(self.root / "data"))

    def _halt(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients), then stop_process's TERM/KILL."""
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        stop_process(self.proc)
        self.proc = None

    def stop(self) -> None:
        self._halt()
        if self.external:
            shutil.rmtree(self.external, ignore_errors=True)
            link = self.workdir / "pg"
            if link.is_symlink():
                link.unlink()
            self.external = self.root = None

    def restart(self) -> None:
        self._halt()
        self._launch()

    # -- namespaces ------------------------------------------------------
    def psql_run(self, statement: str, database: str = "postgres", timeout: float = 30):
        return self._psql(database, statement, timeout)

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = self._psql(database, statement)
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    # -- helpers ---------------------------------------------------------
    def _psql(self, database: str, statement: str, timeout: float = 30) -> subprocess.CompletedProcess:
        argv = [self.psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                "-p", str(self.port), "-U", "postgres", "-d", database, "-c", statement]
        env = dict(os.environ, PGCONNECT_TIMEOUT="3")
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", "psql timed out")

    def _run_as(self, argv: list[str], what: str) -> None:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.root,
                                    preexec_fn=_demoter(self.user), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{what} timed out") from None
        if result.returncode != 0:
            raise ServiceError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def _make_root(self) -> Path:
        """workdir/pg owned by the server user, or a linked /tmp dir it can reach."""
        root = self.workdir / "pg"
        if root.is_symlink():
            root.unlink()
        root.mkdir(exist_ok=True)
        self._own(root)
        if self._reachable(root):
            return root
        root.rmdir()
        self.external = Path(tempfile.mkdtemp(prefix=f"lab-pg-{self.port}-"))
        write_owner(self.external)
        self._own(self.external)
        root.symlink_to(self.external)
        self.notes.append(f"{self.user} cannot reach {self.workdir}; cluster in {self.external}")
        return self.external

    def _own(self, path: Path) -> None:
        os.chmod(path, 0o700)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _reachable(self, path: Path) -> bool:
        if not self.user:
            return True
        probe = subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)], cwd="/",
                               preexec_fn=_demoter(self.user))
        return probe.returncode == 0
