"""The runner's shared RabbitMQ gets every cell's vhost in one call at its start (issue 15)."""

from __future__ import annotations

import lab.services as services
from lab.matrix import Cell
from lab.runner import namespace_for, shared_namespaces
from lab.services.base import ServiceError


class FakeShared:
    def __init__(self, fail: bool = False):
        self.kind, self.version, self.fail = "rabbitmq", "0", fail
        self.calls: list[list[str]] = []
        self.prepared: set[str] = set()
        self.notes: list[str] = []

    def start(self):
        return self

    def prepare_many(self, namespaces):
        self.calls.append(list(namespaces))
        if self.fail:
            raise ServiceError("no")
        self.prepared.update(namespaces)

    def prepare(self, namespace):
        self.prepared.add(namespace)

    def url_for(self, namespace, role="broker"):
        return f"amqp://x/{namespace}"


def _cell(scenario: str, broker: str, pool: str = "prefork") -> Cell:
    return Cell(scenario=scenario, celery="5.6.2", pool=pool, broker=broker, backend="redis",
                profile="defaults", mode="default" if scenario == "lifecycle-smoke" else "restart")


def test_only_cells_on_the_shared_server_are_named():
    cells = [_cell("lifecycle-smoke", "amqp"), _cell("lifecycle-smoke", "redis"),
             _cell("broker-fault", "amqp")]  # broker-fault owns its node: not on the shared one
    assert shared_namespaces(cells, "rabbitmq", "run1", 1) == [namespace_for(cells[0], "run1", 1)]


def test_the_shared_server_prepares_them_once_at_its_start(tmp_path, monkeypatch):
    fake = FakeShared()
    monkeypatch.setattr(services, "make_service", lambda kind, workdir, provider: fake)
    hub = services.ServiceHub(tmp_path)
    hub.prepare_ahead("rabbitmq", ["a", "b"])
    assert hub._shared_service("rabbitmq") is fake
    hub._shared_service("rabbitmq")
    assert fake.calls == [["a", "b"]]


def test_a_failed_batch_leaves_each_cell_to_prepare_its_own(tmp_path, monkeypatch):
    fake = FakeShared(fail=True)
    monkeypatch.setattr(services, "make_service", lambda kind, workdir, provider: fake)
    hub = services.ServiceHub(tmp_path)
    hub.prepare_ahead("rabbitmq", ["a"])
    assert hub._shared_service("rabbitmq") is fake and fake.prepared == set()
    assert "each cell prepared its own" in fake.notes[0]
    hub._shared_service("rabbitmq")
    assert len(fake.calls) == 1  # the server is shared all the same: no second start, no second try


def test_an_oserror_in_the_batch_is_no_worse_than_a_service_error(tmp_path, monkeypatch):
    fake = FakeShared()
    fake.prepare_many = lambda namespaces: (_ for _ in ()).throw(OSError("docker gone"))
    monkeypatch.setattr(services, "make_service", lambda kind, workdir, provider: fake)
    hub = services.ServiceHub(tmp_path)
    hub.prepare_ahead("rabbitmq", ["a"])
    assert hub._shared_service("rabbitmq") is fake and hub._shared_service("rabbitmq") is fake
    assert "docker gone" in fake.notes[0]
