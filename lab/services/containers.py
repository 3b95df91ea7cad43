"""Redis, PostgreSQL and RabbitMQ in containers through testcontainers (provider "container").

Contract: `Container{Redis,Postgres,RabbitMQ}(workdir).start()` runs one
container with host networking (no bridge, no published port, no Ryuk) whose
server listens on 127.0.0.1 only, on free ports given on its command line
(redis `--port P --bind 127.0.0.1`, postgres `-p P -c listen_addresses=...`)
or environment (rabbitmq), and returns once a protocol check from the host
answers on 127.0.0.1:P (PING, psql `select 1`, AMQP connection.start) within
`start_timeout` -- else it removes the container and raises ServiceError with
the log tail. Image: LAB_{REDIS,POSTGRES,RABBITMQ}_IMAGE when set (pulled if
absent), else `images.build_image(kind)`; engine: `docker_host` or
DOCKER_HOST. Containers carry the label and the environment LAB_OWNER, so
`find_owned` sees their processes. `url_for`/`prepare` match the local
providers' (psql from the host; rabbitmqctl in the container). `stop()` saves
the log to workdir and removes the container (idempotent); `restart()`
restarts the same container: same ports, data kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from lab.reaper import OWNER_ENV, owner_token
from lab.services.base import Service, ServiceError, free_port, wait_until
from lab.services.postgres import PostgresNamespaces, find_pg_bindir
from lab.services.rabbitmq import VhostNamespaces, amqp_handshake
from lab.services.redis import ROLE_DB, redis_command

OWNER_LABEL = "lab.owner"


def _disable_ryuk() -> None:
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    from testcontainers.core.config import testcontainers_config
    testcontainers_config.ryuk_disabled = True


def _logs(container) -> str:
    try:
        out, err = container.get_logs()
        return (out + err).decode(errors="replace")
    except Exception as exc:       # no container yet, or the engine is gone
        return f"(no container log: {exc!r})\n"


class ContainerService(Service):
    """One server in one container; subclasses give its command and its check."""

    KIND = IMAGE_ENV = ""

    def __init__(self, workdir: Path | None = None, image: str | None = None,
                 docker_host: str | None = None, start_timeout: float = 60.0):
        super().__init__(kind=self.KIND, provider="container", workdir=Path(workdir) if workdir else None)
        self.image = image or os.environ.get(self.IMAGE_ENV, "")
        self.image_source = "caller" if image else (self.IMAGE_ENV if self.image else "local build")
        self.docker_host = docker_host
        self.start_timeout = start_timeout
        self.container = None          # testcontainers DockerContainer while running

    # subclasses: command(), answers() (one bounded check from the host), read_version(),
    # and if need be allocate() (more ports, before command/environment) and environment()
    def allocate(self) -> None:
        pass

    def environment(self) -> dict[str, str]:
        return {}

    def resolve_image(self) -> str:
        """The image to run: the one given (argument or env), else a local build."""
        if not self.image:
            from lab.services.images import build_image
            self.image = build_image(self.kind, self.docker_host)
        note = f"image {self.image} ({self.image_source})"
        if note not in self.notes:
            self.notes.append(note)
        return self.image

    def start(self) -> "ContainerService":
        if self.container is not None:
            return self
        _disable_ryuk()
        from testcontainers.core.container import DockerContainer
        image = self.resolve_image()
        self.port = self.port or free_port()
        self.allocate()
        token = owner_token()
        client_kw = {"environment": {"DOCKER_HOST": self.docker_host}} if self.docker_host else None
        container = DockerContainer(image, docker_client_kw=client_kw, command=self.command(),
                                    env={**self.environment(), OWNER_ENV: token},
                                    name=f"lab-{self.kind}-{self.port}-{os.getpid()}")
        # network="host" sets HostConfig.NetworkMode=host and keeps testcontainers from
        # adding a docker-in-docker network of its own (it would clash with network_mode)
        container.with_kwargs(network="host", labels={OWNER_LABEL: token, "lab.kind": self.kind})
        self.container = container
        try:
            container.start()
            self._wait_ready()
            self.version = self.read_version()
        except Exception as exc:
            tail = _logs(container)[-3000:]
            self.stop()
            what = str(exc) if isinstance(exc, ServiceError) else f"{self.kind} from {image} failed: {exc!r}"
            raise ServiceError(f"{what}\n{tail}") from None
        self.notes.append(f"container {container.get_wrapped_container().short_id}")
        return self

    def _wait_ready(self) -> None:
        wrapped = self.container.get_wrapped_container()

        def ready() -> bool:
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                raise ServiceError(f"{self.kind} container {wrapped.short_id} {wrapped.status}")
            return self.answers()
        wait_until(ready, timeout=self.start_timeout, interval=0.2,
                   what=f"{self.kind} container on 127.0.0.1:{self.port}")

    def restart(self) -> None:
        if self.container is None:
            self.start()
            return
        self.container.get_wrapped_container().restart(timeout=10)
        self._wait_ready()

    def stop(self) -> None:
        if self.container is None:
            return
        container, self.container = self.container, None
        if self.workdir:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.workdir / f"{self.kind}-container.log"
            self.log_path.write_text(_logs(container))
        try:
            container.stop()              # remove(force=True, v=True)
        except Exception as exc:          # already gone, or the engine is: nothing left to remove
            if "404" not in str(exc) and "No such container" not in str(exc):
                self.notes.append(f"removing the container: {exc!r}")

class ContainerRedis(ContainerService):
    KIND, IMAGE_ENV = "redis", "LAB_REDIS_IMAGE"

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--databases", "16",
                "--set-proc-title", "no"]    # a retitled redis-server wipes /proc/PID/environ (LAB_OWNER)

    def answers(self) -> bool:
        try:
            return redis_command(self.host, self.port, "PING", timeout=1.0).startswith(b"+PONG")
        except OSError:
            return False

    def read_version(self) -> str:
        info = redis_command(self.host, self.port, "INFO", "server").decode(errors="replace")
        return next((line.split(":", 1)[1].strip() for line in info.splitlines()
                     if line.startswith("redis_version:")), "")

    def url_for(self, namespace: str, role: str = "broker") -> str:
        return f"redis://{self.host}:{self.port}/{ROLE_DB[role]}"


class ContainerPostgres(PostgresNamespaces, ContainerService):
    KIND, IMAGE_ENV = "postgres", "LAB_POSTGRES_IMAGE"

    def __init__(self, workdir: Path | None = None, **kwargs):
        super().__init__(workdir, **kwargs)
        self._lock = threading.Lock()          # cells prepare concurrently
        self.psql = shutil.which("psql") or str((find_pg_bindir() or Path("/nonexistent")) / "psql")
        if not os.access(self.psql, os.X_OK):
            raise ServiceError("ContainerPostgres needs psql on the host (apt-get install postgresql-client)")

    def command(self) -> list[str]:
        return ["postgres", "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200"]

    def environment(self) -> dict[str, str]:
        return {"POSTGRES_HOST_AUTH_METHOD": "trust"}   # the public image's switch; ours is trust anyway

    def psql_run(self, statement: str, database: str = "postgres", timeout: float = 30):
        argv = [self.psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
                "-U", "postgres", "-d", database, "-c", statement]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, PGCONNECT_TIMEOUT="3"))
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", "psql timed out")

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = self.psql_run(statement, database)
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def answers(self) -> bool:
        return self.psql_run("select 1", timeout=5).stdout.strip() == "1"

    def read_version(self) -> str:
        return self.sql("show server_version").split()[0]


class ContainerRabbitMQ(VhostNamespaces, ContainerService):
    """Node lab-P@localhost; AMQP, distribution and epmd ports free and on 127.0.0.1."""

    KIND, IMAGE_ENV = "rabbitmq", "LAB_RABBITMQ_IMAGE"

    def __init__(self, workdir: Path | None = None, **kwargs):
        super().__init__(workdir, **kwargs)
        self.dist_port = self.epmd_port = 0
        self._lock = threading.Lock()          # cells prepare concurrently

    @property
    def nodename(self) -> str:
        return f"lab-{self.port}@localhost"

    def allocate(self) -> None:
        self.dist_port = self.dist_port or free_port()
        self.epmd_port = self.epmd_port or free_port()

    def command(self) -> list[str]:
        return ["rabbitmq-server"]

    def environment(self) -> dict[str, str]:
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        return {"RABBITMQ_NODENAME": self.nodename, "RABBITMQ_USE_LONGNAME": "false",
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1", "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback,
                "RABBITMQ_CTL_ERL_ARGS": loopback,
                # no config files: a public image's conf.d could add a listener on 0.0.0.0:5672
                "RABBITMQ_CONFIG_FILE": "/tmp/lab-no-config", "RABBITMQ_CONFIG_FILES": "/tmp/lab-no-conf.d"}

    def answers(self) -> bool:
        # cluster_name defaults to the node name with the machine's host name: lab-P@<host>
        return amqp_handshake(self.host, self.port, timeout=1.0, expect=f"lab-{self.port}@".encode())

    def ctl(self, *args: str) -> str:          # in the container: it holds the node's cookie
        result = self.container.get_wrapped_container().exec_run(["rabbitmqctl", "-n", self.nodename, *args])
        output = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} failed ({result.exit_code}): {output[-1500:]}")
        return output

    def read_version(self) -> str:
        return self.ctl("version").strip().splitlines()[-1]

