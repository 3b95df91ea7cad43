"""broker-fault against real brokers and real workers (issue 10).

The two small inputs of the issue, then every fault driven once against a
real server the cell started itself, and the nemesis' refusal to touch a
process the lab does not own. Each cell must be judged from observation
(never `error`), name its finding when it is not a pass, and leave nothing
running (the autouse owner fixture fails the test otherwise)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.catalog import PROFILES, resolve_backend  # noqa: E402
from lab.cellrun import run_cell  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.results import create_run_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FINDINGS = {"catatonic-after-broker-fault", "no-reconnect-after-broker-fault", "exit-after-ready-silent",
            "exit-after-ready-loud", "gave-up-after-retry-budget", "probes-incomplete", "inflight-lost",
            "inflight-incomplete", "inflight-duplicate", "chord-callback-lost", "chord-callback-incomplete",
            "chord-callback-duplicate"}


def run_broker_fault(tmp_path, hub, pool, broker, mode, profile="defaults", spares_dir=None):
    import celery
    backend = resolve_backend("auto", broker)
    cell = Cell(celery.__version__, pool, broker, backend, "broker-fault", profile, mode)
    services = hub.for_cell(broker, backend, tmp_path / "svc", "bf")
    run_dir = create_run_dir(tmp_path, "bf")
    record = run_cell({"run_id": "bf", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "bf", "profile": PROFILES[profile], "spares_dir": spares_dir})
    outcome = record.outcome
    assert outcome.verdict.value != "error", (outcome.summary, outcome.evidence)
    if outcome.verdict.value == "n/a":
        return record
    if outcome.verdict.value != "pass":
        assert outcome.signature in FINDINGS, outcome.summary
        assert {f.signature for f in outcome.findings} <= FINDINGS
    broker_faults = [f["kind"] for f in record.faults if f["worker"] == "broker"]
    assert broker_faults, record.faults
    assert outcome.metrics["broker_connection_retry"] is not None  # the worker's retry settings, recorded
    return record


def _need(binary_check, what):
    if not binary_check():
        pytest.skip(f"no {what}")


def test_prefork_redis_restart_idle_then_three_tasks_within_30s(tmp_path, hub):
    record = run_broker_fault(tmp_path, hub, "prefork", "redis", "restart")
    m = record.outcome.metrics
    assert m["broker_data_survived"] is False  # a Redis without persistence comes back empty
    assert m["probe_delay_s"] == 2.0 and m["probe_bound_s"] == 30.0
    if record.outcome.verdict.value == "pass":
        assert m["probes_completed"] == "3/3" and m["time_to_first_consume_s"] < 30
    assert [f["kind"] for f in record.faults if f["worker"] == "broker"] == ["broker-stop", "broker-start"]


def test_client_kill_while_a_5s_task_runs_accounts_for_it_and_three_later_tasks(tmp_path, hub):
    record = run_broker_fault(tmp_path, hub, "threads", "redis", "drop-connections@running")
    m = record.outcome.metrics
    assert m["inflight_completed_once"] + m["inflight_lost"] + m["inflight_duplicated"] == 1
    assert m["probes_completed"].endswith("/3")
    assert "CLIENT KILL TYPE normal" in record.outcome.evidence["fault_detail"]
    assert record.outcome.evidence["inflight_ledger"].startswith("completed_once:")


@pytest.mark.parametrize("pool,broker,mode", [
    ("prefork", "amqp", "restart@running"),
    ("gevent", "redis", "outage-short"),
    ("prefork", "redis", "outage-long"),
    ("threads", "redis", "blackhole@running"),
    ("prefork", "amqp", "drop-connections"),
    ("threads", "sql-postgres", "drop-connections@running"),
    ("prefork", "sql-postgres", "restart"),
    ("prefork", "redis", "failover"),
    ("prefork", "redis", "restart@chord"),
    ("threads", "redis", "outage-reset@running"),
    ("gevent", "redis", "flap"),
    ("threads", "sql-postgres", "blackhole@running"),
    ("prefork", "amqp", "blackhole"),
])
def test_each_fault_against_a_real_broker(tmp_path, hub, pool, broker, mode):
    from lab.services.postgres import find_pg_bindir
    from lab.services.rabbitmq import find_epmd, find_rabbit_bindir
    if broker == "amqp":
        _need(lambda: find_rabbit_bindir() and find_epmd(), "rabbitmq-server")
    if broker == "sql-postgres":
        _need(find_pg_bindir, "PostgreSQL")
    record = run_broker_fault(tmp_path, hub, pool, broker, mode)
    outcome = record.outcome
    assert outcome.verdict.value != "n/a", outcome.summary
    kinds = [f["kind"] for f in record.faults if f["worker"] == "broker"]
    expected = {"restart": "broker-stop", "outage": "broker-stop", "blackhole": "broker-pause",
                "drop": "broker-drop-connections", "failover": "broker-kill-primary", "flap": "broker-stop"}
    assert expected[mode.split("-")[0].split("@")[0]] in kinds, kinds
    if mode.startswith("outage-long"):
        assert outcome.metrics["broker_connection_max_retries"] == 3
        assert outcome.metrics["scaled"]["stands_for_max_retries"] == 100
        assert outcome.metrics["down_s"] > outcome.metrics["scaled"]["retry_budget_s"]
    if mode.startswith("outage-reset"):
        assert "broker-reset-listener" in kinds
    if mode.startswith("flap"):
        assert kinds.count("broker-start") == 3
    if mode.startswith("failover"):
        assert "new_primary_port" in outcome.evidence["fault_detail"]
    if broker == "amqp" and mode.startswith("restart"):
        assert outcome.metrics["broker_data_survived"] is True  # durable queue, persistent message


def test_a_node_booted_ahead_is_claimed_restarted_and_released(tmp_path, hub, monkeypatch):
    """The runner's spare RabbitMQ node (lab.services.spares) stands in for the cell's own boot:
    the cell claims it, restarts it (the new node is the cell's), and nothing is left."""
    import time

    import psutil

    from lab.reaper import child_token, owner_token
    from lab.services.rabbitmq import find_epmd, find_rabbit_bindir
    from lab.services.spares import SpareNodes
    _need(lambda: find_rabbit_bindir() and find_epmd(), "rabbitmq-server")
    spares = SpareNodes(tmp_path / "spares", wanted=1)
    try:
        deadline = time.monotonic() + 90
        while not list((tmp_path / "spares" / "ready").glob("*.json")) and time.monotonic() < deadline:
            assert not spares.errors, spares.errors
            time.sleep(0.2)
        node = next(iter(spares.nodes.values()))
        booted_pid = node.proc.pid
        monkeypatch.setenv("LAB_OWNER", child_token(owner_token(), "cell"))  # a cell under this "runner"
        record = run_broker_fault(tmp_path, hub, "prefork", "amqp", "restart", spares_dir=spares.dir)
        assert "booted ahead by the runner" in record.outcome.evidence["broker_server"]
        assert record.outcome.metrics["broker_data_survived"] is True
        assert not list((tmp_path / "spares" / "ready").glob("*.json"))  # claimed
        spares.release(tmp_path)
        assert not psutil.pid_exists(booted_pid)  # killed by the cell, reaped by its "runner"
    finally:
        spares.close()


def test_sqlite_broker_is_na_with_the_reason(tmp_path, hub):
    record = run_broker_fault(tmp_path, hub, "solo", "sql", "restart")
    assert record.outcome.verdict.value == "n/a" and "no broker server" in record.outcome.summary


def test_nemesis_refuses_a_process_the_lab_does_not_own(tmp_path, monkeypatch):
    from lab.services.base import ServiceError
    from lab.services.nemesis import Nemesis, NemesisRefused
    from lab.services.redis import RedisServer
    server = RedisServer(tmp_path / "r").start()
    try:
        nemesis = Nemesis("redis", server, tmp_path)
        with pytest.raises(NemesisRefused):
            nemesis._signal(0, [1], server)  # pid 1: neither our LAB_OWNER nor our server's tree
        with monkeypatch.context() as m:  # another owner's token, and a process that is not our child
            m.setenv("LAB_OWNER", "someone-else")
            with pytest.raises(NemesisRefused):
                nemesis._check_owned([os.getppid()], server)
        os.kill(server.proc.pid, 0)  # still running, never stopped
        real, server.port = server.port, 6379
        with pytest.raises(ServiceError):
            nemesis.drop_connections()  # a default port is never cut
        with pytest.raises(NemesisRefused):
            nemesis.pause()             # nor paused
        server.port = real
        assert nemesis.pause() and nemesis.paused  # our own server: paused ...
        nemesis.resume()                            # ... and resumed
        assert nemesis.paused == []
    finally:
        server.stop()
