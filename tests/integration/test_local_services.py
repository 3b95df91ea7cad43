"""Local-binary providers: start, prepare, answer, restart, stop, leave nothing behind."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from lab.reaper import find_owned, kill_owned
from lab.services.base import ServiceError, port_open

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def owner(monkeypatch):
    token = f"lab-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("LAB_OWNER", token)
    yield token
    kill_owned(token)  # last line of defence if the test failed half-way


def _psql_select_1(server, database: str) -> str:
    result = subprocess.run([server.psql, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(server.port),
                             "-U", "postgres", "-d", database, "-c", "select 1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgres_lifecycle(tmp_path, owner):
    from lab.services.postgres import PostgresServer, find_pg_bindir
    if not find_pg_bindir():
        pytest.skip("no PostgreSQL binaries")
    server = PostgresServer(tmp_path / "pg-cell")
    try:
        began = time.monotonic()
        server.start()
        print(f"postgres start: {time.monotonic() - began:.2f}s {server.describe()}")
        assert server.port != 5432 and server.version[:1].isdigit()
        assert find_owned(owner), "the postmaster must carry LAB_OWNER"
        server.prepare("Cell-1.x")
        server.prepare("Cell-1.x")  # idempotent
        assert server.url_for("Cell-1.x", "broker") == \
            f"sqla+postgresql+psycopg2://postgres@127.0.0.1:{server.port}/cell_1_x"
        assert server.url_for("Cell-1.x", "backend") == \
            f"db+postgresql+psycopg2://postgres@127.0.0.1:{server.port}/cell_1_x"
        assert _psql_select_1(server, "cell_1_x") == "1"
        server.sql("create table kept (x int); insert into kept values (42)", database="cell_1_x")

        port = server.port
        server.restart()
        assert server.port == port
        assert server.sql("select x from kept", database="cell_1_x") == "42"
    finally:
        server.stop()
        server.stop()  # idempotent
    assert not port_open("127.0.0.1", port)
    assert find_owned(owner) == []


def test_rabbitmq_vhosts_made_at_boot_and_in_one_call(tmp_path, owner):
    """boot_vhost: the blank node makes the vhost itself (no rabbitmqctl call), guest can use it at
    once and after a restart; prepare_many makes several vhosts in one call, names sanitised as
    prepare does."""
    import kombu
    from lab.services.rabbitmq import RabbitMQServer, find_epmd, find_rabbit_bindir
    if not (find_rabbit_bindir() and find_epmd()):
        pytest.skip("no rabbitmq-server")
    server = RabbitMQServer(tmp_path / "rmq-boot", boot_vhost="broker fault")
    try:
        server.start()
        assert server.prepared == {"broker_fault"}
        server.ctl = None  # prepare of the boot vhost must not call rabbitmqctl
        server.prepare("broker fault")
        del server.ctl
        with kombu.Connection(server.url_for("broker fault"), connect_timeout=5) as conn:
            conn.connect()
        server.prepare_many(["cell-a", "cell/b", "cell-a"])
        made = set(server.ctl("list_vhosts", "--quiet", "--no-table-headers").split())
        assert {"broker_fault", "cell-a", "cell_b"} <= made and "/" not in made
        for namespace in ("cell-a", "cell/b"):
            with kombu.Connection(server.url_for(namespace), connect_timeout=5) as conn:
                conn.connect()
        server.restart()
        assert server.prepared >= {"broker_fault", "cell-a", "cell_b"}
        with kombu.Connection(server.url_for("broker fault"), connect_timeout=5) as conn:
            conn.connect()
    finally:
        server.stop()
    assert find_owned(owner) == []


def test_rabbitmq_lifecycle(tmp_path, owner):
    from lab.services.rabbitmq import RabbitMQServer, amqp_handshake, find_epmd, find_rabbit_bindir
    if not (find_rabbit_bindir() and find_epmd()):
        pytest.skip("no rabbitmq-server")
    server = RabbitMQServer(tmp_path / "rmq-cell")
    try:
        began = time.monotonic()
        server.start()
        print(f"rabbitmq start: {time.monotonic() - began:.2f}s {server.describe()}")
        assert server.port not in (5672, 25672) and server.epmd_port != 4369
        assert server.version.count(".") == 2
        names = {p.name() for p in find_owned(owner)}
        assert {"beam.smp", "epmd"} <= names, names

        server.prepare("cell-1")
        server.prepare("cell-1")  # idempotent
        assert server.url_for("cell-1") == f"amqp://guest:guest@127.0.0.1:{server.port}/cell-1"
        with pytest.raises(ServiceError):
            server.url_for("cell-1", "backend")
        assert amqp_handshake("127.0.0.1", server.port)
        assert "cell-1" in server.ctl("list_vhosts", "--quiet", "--no-table-headers").split()

        port = server.port
        began = time.monotonic()
        server.restart()
        print(f"rabbitmq restart: {time.monotonic() - began:.2f}s")
        assert server.port == port and amqp_handshake("127.0.0.1", port)
        assert "cell-1" in server.ctl("list_vhosts", "--quiet", "--no-table-headers").split()
    finally:
        server.stop()
        server.stop()  # idempotent
    assert not port_open("127.0.0.1", port)
    assert find_owned(owner) == []
