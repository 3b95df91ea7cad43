"""shutdown-race end to end: real prefork workers on a real Redis, through lab.cellrun."""

from __future__ import annotations

import inspect
import json

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.catalog import PROFILES
from lab.cellrun import run_cell
from lab.matrix import Cell
from lab.scenarios.shutdown_race import SCENARIO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def cell_record(tmp_path, hub, pool, mode, profile, repeats):
    import celery
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "it")
    cell = Cell(celery.__version__, pool, "redis", "redis", "shutdown-race", profile, mode,
                repeats=repeats, concurrency=2, seed=7)
    spec = {"run_id": "it", "run_dir": str(tmp_path / "run"), "cell": cell.to_dict(),
            "broker_url": services.broker_url, "backend_url": services.backend_url,
            "namespace": f"it-{mode}".replace("+", "-"), "profile": PROFILES[profile],
            "services": services.describe()}
    record = run_cell(spec)
    attempts = sorted((tmp_path / "run" / "cells" / cell.cell_id).glob("attempt-*/observations.json"))
    return record, [json.loads(p.read_text()) for p in attempts]


def sentinel_unguarded() -> bool:
    """Does the installed AsynPool read proc._sentinel_poll without a default (the seed's bug)?"""
    from celery.concurrency.asynpool import AsynPool
    return "proc._sentinel_poll is not None" in inspect.getsource(AsynPool._untrack_child_process)


def test_targeted_signals_from_inside_the_master_at_the_named_point(tmp_path, hub):
    record, attempts = cell_record(tmp_path, hub, "prefork", "targeted", "quit", repeats=2)
    assert record.outcome.verdict.is_finding, record.outcome.evidence
    assert len(attempts) == 2 and record.outcome.metrics["attempts"] == 2
    for obs in attempts:
        inj = obs["injection"]
        assert obs["point_reached"] and obs["signals"][0]["by"] == "master"
        assert (inj["point"], inj["thread"], inj["in_pool"], inj["forked"], inj["sentinel_tracked"]) == \
            ("up", "MainThread", True, True, False)
        assert any("on_process_up" in frame for frame in inj["stack"])
        outcome = SCENARIO.judge(obs)  # judged from what was observed, nothing else
        log = (tmp_path / "run" / "cells" / record.cell_id / f"attempt-{attempts.index(obs) + 1}"
               / "worker.log").read_text()
        if "sentinel-poll-attributeerror" in outcome.metrics.get("findings", []):
            assert "no attribute '_sentinel_poll'" in log and "in _untrack_child_process" in log
        if outcome.verdict.value == "pass":
            assert obs["exit_code"] == 0 and "Traceback" not in log
    if sentinel_unguarded():  # where the seed's code is, the cold shutdown at `up` breaks the pool
        assert record.outcome.verdict.value == "bug", record.outcome.summary
        assert record.outcome.evidence["time_to_repro_s"] > 0


def test_random_is_the_seed_method_with_a_recorded_plan(tmp_path, hub):
    record, attempts = cell_record(tmp_path, hub, "prefork", "random", "term", repeats=1)
    assert record.outcome.verdict.is_finding, record.outcome.evidence
    (obs,) = attempts
    assert 1.0 <= obs["fire_at_s"] <= 4.0 and obs["plan"]["signals"] == ["TERM"]
    assert [s["by"] for s in obs["signals"]] == ["driver"] and "injection" not in obs
    assert obs["exit_code"] is not None, obs["log_tail"]
    assert record.outcome.metrics["concurrency"] == 2 and record.outcome.metrics["seed"] == obs["seed"]
    assert any("Warm shutdown" in line for line in obs["shutdown_lines"]), obs["log_tail"]


def test_targeted_needs_pool_children(tmp_path, hub):
    record, attempts = cell_record(tmp_path, hub, "threads", "targeted", "quit", repeats=3)
    assert record.outcome.verdict.value == "n/a" and attempts == []
    assert "the threads pool has none" in record.outcome.summary
