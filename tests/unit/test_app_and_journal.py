"""Settings from the environment, the journal format, owner tokens, plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab.app.config import settings_from_env
from lab.journal import read_journal, select, write_event
from lab.matrix import load_matrix
from lab.plan import make_plan, record_install_failure, write_plan
from lab.reaper import child_token, find_owned, owns
from lab.results import create_run_dir, read_records


def test_settings_from_env():
    s = settings_from_env({"LAB_BROKER_URL": "redis://x/0", "LAB_ACKS_LATE": "true",
                           "LAB_VISIBILITY_TIMEOUT": "30", "LAB_QUEUE": "q1",
                           "LAB_CELERY_SETTINGS": json.dumps({"worker_soft_shutdown_timeout": 5,
                                                              "broker_transport_options": {"x": 1}})})
    assert s["broker_url"] == "redis://x/0" and s["task_acks_late"] is True
    assert s["broker_transport_options"] == {"visibility_timeout": 30.0, "x": 1}
    assert s["task_default_queue"] == "q1" and s["task_default_routing_key"] == "q1"
    assert s["worker_soft_shutdown_timeout"] == 5


def test_visibility_timeout_only_for_transports_that_know_it():
    sql = settings_from_env({"LAB_BROKER_URL": "sqla+sqlite:///x", "LAB_VISIBILITY_TIMEOUT": "30"})
    assert sql["broker_transport_options"] == {}


def test_settings_reject_non_object_json():
    with pytest.raises(ValueError, match="JSON object"):
        settings_from_env({"LAB_CELERY_SETTINGS": "[1]"})


def test_journal_lines_from_several_processes(tmp_path):
    path = tmp_path / "j.jsonl"
    write_event("worker_ready", path)
    code = f"from lab.journal import write_event; write_event('child_init', {str(path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    with open(path, "a") as fh:
        fh.write('{"event": "torn"')
    events = read_journal(path)
    assert [e["event"] for e in events] == ["worker_ready", "child_init"]
    assert events[0]["pid"] == os.getpid() and events[1]["pid"] != os.getpid()
    assert select(events, "child_init")[0]["mono"] >= events[0]["mono"]


def test_owner_tokens_nest():
    assert owns("run", child_token("run", "cell")) and owns("run", "run")
    assert not owns("run", "running") and not owns("run", None)


def test_find_owned_sees_a_spawned_child(owner_token):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert [p.pid for p in find_owned(owner_token)] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_install_failure_becomes_setup_failed_records(tmp_path):
    run_dir = create_run_dir(tmp_path, "r1")
    write_plan(run_dir, make_plan(load_matrix("smoke"), "r1"))
    assert record_install_failure(run_dir, "5.6.2", "No matching distribution") == 10
    records = list(read_records([run_dir]))
    assert {r.outcome.verdict.value for r in records} == {"setup-failed"}
    assert records[0].outcome.signature == "setup:install"
    assert "No matching distribution" in records[0].outcome.evidence["install_log"]
    assert record_install_failure(run_dir, "5.6.2", "again") == 0  # idempotent


def test_journal_is_read_incrementally_and_survives_replacement(tmp_path):
    path = tmp_path / "j.jsonl"
    write_event("a", path)
    assert [e["event"] for e in read_journal(path)] == ["a"]
    with open(path, "a") as fh:
        fh.write('{"event": "b", "mono": 1')  # not ended yet: left for the next read
    assert [e["event"] for e in read_journal(path)] == ["a"]
    with open(path, "a") as fh:
        fh.write(', "wall": 1}\n')
    assert [e["event"] for e in read_journal(path)] == ["a", "b"]
    first = read_journal(path)
    first.append({"event": "mine"})  # a caller's list is its own
    assert [e["event"] for e in read_journal(path)] == ["a", "b"]
    path.unlink()
    assert read_journal(path) == []
    write_event("c", path)  # a new file at the same path is read from its start
    assert [e["event"] for e in read_journal(path)] == ["c"]
