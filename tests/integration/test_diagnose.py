"""`lab diagnose -- <worker command>` on real worker commands equivalent to
silent-exit conditions: it must classify from the output and the process
state alone, stay within its bound, and leave nothing running (detached and
backgrounded workers included)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.diagnose import EXIT_CODES  # noqa: E402
from lab.scenarios.startup_brokers import SilentBroker  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WORKER = [sys.executable, "-m", "celery", "-A", "lab.app.celery_app", "worker", "-l", "INFO",
          "--without-gossip", "--without-mingle", "--without-heartbeat"]


def diagnose(tmp_path, command, env=None, timeout=30.0, stop_timeout=5.0):
    full_env = {**os.environ, "LAB_QUEUE": "lab.dg", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "lab", "diagnose", "--json", "--timeout", str(timeout),
                           "--stop-timeout", str(stop_timeout), "--", *command],
                          capture_output=True, text=True, env=full_env,
                          cwd=tmp_path, timeout=timeout + 60)
    facts = json.loads(proc.stdout)
    klass = facts["classification"]["klass"]
    assert proc.returncode == EXIT_CODES[klass], proc.stderr[-2000:]
    return facts


@pytest.fixture
def redis_url(tmp_path, hub):
    return hub.for_cell("redis", "redis", tmp_path / "svc", "dg").broker_url


def refused_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_a_healthy_worker_is_ready_then_stopped(tmp_path, redis_url):
    facts = diagnose(tmp_path, WORKER + ["-P", "solo"], {"LAB_BROKER_URL": redis_url})
    assert facts["classification"]["klass"] == "ready", facts["tail"]
    assert facts["ready_line"] and facts["stop"]["stop_signal"] == "SIGTERM"


def test_pipe_to_tee_hides_a_loud_failure(tmp_path):
    sock = refused_port()
    try:
        env = {"LAB_BROKER_URL": f"redis://127.0.0.1:{sock.getsockname()[1]}/0",
               "LAB_CELERY_SETTINGS": json.dumps({"broker_connection_retry_on_startup": False})}
        script = '"$0" "$@" 2>&1 | tee -a tee.log'
        facts = diagnose(tmp_path, ["sh", "-c", script] + WORKER + ["-P", "solo"], env)
    finally:
        sock.close()
    assert facts["exit_code"] == 0  # tee's status
    if facts["explaining_lines"]:
        assert facts["classification"]["sub"] == "exit0-errors-logged"


def test_detached_worker_is_found_and_stopped(tmp_path, redis_url):
    facts = diagnose(tmp_path, WORKER + ["-P", "solo", "--detach", "--logfile", str(tmp_path / "d.log")],
                     {"LAB_BROKER_URL": redis_url})
    if facts["exit_code"] == 0 and facts["leftovers"]:
        assert facts["classification"]["sub"] == "exit0-worker-left-running"
        assert facts["killed_after_exit"]  # diagnose stopped what the command left behind


def test_broker_that_never_answers_is_a_bounded_hang(tmp_path):
    broker = SilentBroker()
    try:
        facts = diagnose(tmp_path, WORKER + ["-P", "threads"],
                         {"LAB_BROKER_URL": f"redis://127.0.0.1:{broker.port}/0"}, timeout=10.0)
    finally:
        broker.close()
    assert facts["elapsed_s"] < 14
    if facts["exit_code"] is None and not facts["ready"]:
        assert facts["classification"]["klass"] == "hang"
        assert facts["stop"]["stop_signal"] == "SIGTERM"


@pytest.mark.parametrize("mode", ["sigterm-consumer", "stderr-closed", "broker-refused-noretry"])
def test_diagnose_agrees_with_the_scenario(tmp_path, hub, mode):
    """The same command the silent-exit scenario runs, given to `lab diagnose`: the same class."""
    import celery

    from lab.cellrun import run_cell
    from lab.matrix import Cell
    from lab.results import create_run_dir
    from lab.scenarios.startup_conditions import prepare
    from lab.worker import WorkerController, WorkerSpec

    services = hub.for_cell("redis", "redis", tmp_path / "svc", "eq")
    cell = Cell(celery.__version__, "solo", "redis", "redis", "silent-exit", "defaults", mode)
    run_dir = create_run_dir(tmp_path, "eq")
    record = run_cell({"run_id": "eq", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "eq", "profile": {}})
    assert record.outcome.verdict.value not in ("error", "n/a"), record.outcome.evidence
    scenario_class = record.outcome.metrics["class"]

    workdir = tmp_path / "dg"
    workdir.mkdir()
    base_env = {"LAB_BROKER_URL": services.broker_url, "LAB_RESULT_BACKEND": services.backend_url,
                "LAB_QUEUE": "lab.eq"}
    prepared = prepare(mode, "redis", workdir, base_env)
    try:
        spec = WorkerSpec(pool="solo", queue="lab.eq", env=prepared.overrides["env"],
                          wrapper=prepared.overrides["wrapper"])
        controller = WorkerController(spec, workdir, workdir / "journal.jsonl")
        env = {**spec.env, "LAB_JOURNAL": str(workdir / "journal.jsonl"),
               "LAB_WORKER_ID": controller.worker_id}
        facts = diagnose(workdir, controller.command(), env)
    finally:
        prepared.close()
    c = facts["classification"]
    assert f"{c['klass']}/{c['sub']}" == scenario_class, (facts["tail"], record.outcome.summary)
