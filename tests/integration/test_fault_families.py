"""Every issue-11 fault family against real workers and a real Redis, through run_cell as the
matrix runs it: each cell judged from observation (never `error`), its fault on record, and
nothing left running (the conftest's owner check)."""

from __future__ import annotations

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.catalog import PROFILES  # noqa: E402
from lab.cellrun import run_cell  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.results import create_run_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def cell_record(tmp_path, hub, scenario, pool, mode, profile="defaults"):
    import celery
    cell = Cell(celery.__version__, pool, "redis", "redis", scenario, profile, mode)
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "ff")
    run_dir = create_run_dir(tmp_path, "ff")
    record = run_cell({"run_id": "ff", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "ff", "profile": PROFILES[profile]})
    assert record.outcome.verdict.value not in ("error", "n/a", "setup-failed"), record.outcome.summary
    workers = record.environment["workers"]
    assert workers and all(w["stdio"] == "pipe" and w["deviations"] for w in workers)
    return record


@pytest.mark.parametrize("pool,mode", [("prefork", "shutdown"), ("threads", "revoke-terminate"),
                                       ("prefork", "pool-grow")])
def test_control(tmp_path, hub, pool, mode):
    record = cell_record(tmp_path, hub, "remote-control", pool, mode)
    outcome = record.outcome
    assert outcome.metrics["mode"] == mode
    if mode == "shutdown":  # control.shutdown is a warm shutdown: running tasks finish, exit 0
        assert outcome.verdict.value == "pass", outcome.summary
    if pool == "threads":  # the thread pool cannot terminate a task: the worker says so
        assert "failed-fast:revoke-terminate-refused" in outcome.finding_keys()


def test_eviction_master_kill(tmp_path, hub):
    record = cell_record(tmp_path, hub, "eviction", "prefork", "master-kill")
    metrics = record.outcome.metrics
    assert metrics["mode"] == "master-kill" and "children_left_running" in metrics
    kills = [f for f in record.faults if f["kind"] == "signal" and f["worker"] == "old"]
    assert [(f["signal"], f["target"]) for f in kills] == [("SIGKILL", "master")]
    assert (metrics["children_left_running"] > 0) == ("bug:children-outlived-master" in record.outcome.finding_keys())


@pytest.mark.parametrize("mode", ["memory", "count"])
def test_child_recycling(tmp_path, hub, mode):
    outcome = cell_record(tmp_path, hub, "recycle", "prefork", mode).outcome
    assert outcome.metrics["recycles"] >= 3 and outcome.metrics["tasks"] == 132, outcome.summary
    assert outcome.metrics["fresh_s"] is not None, outcome.summary


def test_publish_through_a_warm_shutdown(tmp_path, hub):
    outcome = cell_record(tmp_path, hub, "publish-through-shutdown", "threads", "warm").outcome
    m = outcome.metrics
    assert m["published"] > 40 and m["after_exit"] > 0
    assert m["published"] == (m["by_worker"] + m["left_in_broker"] + m["parked"] + m["running_lost"] + m["lost"]
                              + m["publish_failed"] + m["not_drained"])


def test_a_cold_shutdown_cuts_the_task_in_flight(tmp_path, hub):
    """pub-inflight runs at the SIGQUIT: early acknowledgement (Celery's default) loses it."""
    outcome = cell_record(tmp_path, hub, "publish-through-shutdown", "prefork", "cold").outcome
    assert "lost:running-task-lost" in outcome.finding_keys(), outcome.summary
    assert "pub-inflight" in outcome.summary


def test_resources_low_nofile(tmp_path, hub):
    outcome = cell_record(tmp_path, hub, "start-limits", "solo", "nofile-low").outcome
    assert outcome.metrics["nofile"] == 64 and outcome.metrics["baseline_nofile"] <= 1024
    if outcome.metrics["ready_s"] is not None:
        assert outcome.metrics["nofile_seen"] == 64 and outcome.metrics["start_ratio"] > 0


@pytest.mark.parametrize("scenario,mode", [("lifecycle-smoke", "default"), ("silent-exit", "baseline")])
def test_a_matrix_defined_profile_runs_on_every_scenario(tmp_path, hub, scenario, mode):
    """Issue 11: `[profiles.max-memory-1k]` used to be rejected for these scenarios; it validates and runs."""
    import celery

    from lab.matrix import parse_matrix
    matrix = parse_matrix({"matrix": {"celery": [celery.__version__], "pools": ["prefork"], "scenarios": [scenario]},
                           "profiles": {"max-memory-1k": {"settings": {"worker_max_memory_per_child": 1}}},
                           "scenario": {scenario: {"profiles": ["max-memory-1k"], "modes": [mode]}}}, "m.toml", "m")
    (cell,) = matrix.cells()
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "pe")
    run_dir = create_run_dir(tmp_path, "pe")
    record = run_cell({"run_id": "pe", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "pe", "profile": matrix.profile("max-memory-1k")})
    assert record.outcome.verdict.value == "pass", record.outcome.summary
