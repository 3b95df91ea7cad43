"""The wait ledger (lab/waits.py) and the n/a decided before provisioning (Scenario.not_for)."""

import threading

import pytest

from lab import scenarios
from lab.matrix import Cell
from lab.plan import NA_ESTIMATE_S, cell_estimate
from lab.waits import WaitLedger


def test_outermost_wait_counts_once_and_inherent_is_hold_plus_observe():
    ledger = WaitLedger()
    with ledger.waiting("observe"):
        ledger.hold(0.02)  # nested: not counted again
    ledger.hold(0.01)
    with ledger.waiting("start"):
        pass
    summary = ledger.summary()
    assert summary["observe"] >= 0.02 and summary["hold"] >= 0.01
    assert summary["inherent"] == pytest.approx(summary["observe"] + summary["hold"], abs=2e-3)
    assert summary["observe"] < 0.5  # the nested hold was not added on top


def test_waits_off_the_main_thread_are_not_counted():
    ledger = WaitLedger()
    thread = threading.Thread(target=ledger.hold, args=(0.02,))
    thread.start()
    thread.join()
    assert ledger.summary()["inherent"] == 0.0


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="allowed: hold, observe, start, confirm"):
        with WaitLedger().waiting("nap"):
            pass


def cell(scenario, pool, mode, broker="redis"):
    return Cell("5.6.2", pool, broker, "redis", scenario, "defaults", mode)


@pytest.mark.parametrize("scenario,pool,mode,broker", [
    ("chord-stall", "gevent", "child-death", "redis"),
    ("recycle", "solo", "count", "redis"),
    ("remote-control", "threads", "pool-grow", "redis"),
    ("shutdown-race", "eventlet", "targeted+kill-child", "redis"),
    ("broker-fault", "prefork", "restart", "sql"),
])
def test_static_na_is_known_before_provisioning_and_costs_nothing_in_the_plan(scenario, pool, mode, broker):
    c = cell(scenario, pool, mode, broker)
    assert scenarios.get(scenario).not_for(c)
    assert cell_estimate(c) == NA_ESTIMATE_S


def test_applicable_cells_keep_their_estimate():
    c = cell("chord-stall", "prefork", "child-death")
    assert scenarios.get("chord-stall").not_for(c) is None
    assert cell_estimate(c) > 1.0


def test_runner_records_static_na_without_provisioning(tmp_path):
    from lab import runner

    class Hub:  # provisioning must not be reached
        def for_cell(self, *a, **k):
            raise AssertionError("provisioned an n/a cell")

    c = cell("recycle", "gevent", "count")
    plan = {"run_id": "r", "cells": [c.to_dict()], "profiles": {}, "matrix_path": "matrices/default.toml"}
    record = runner.run_one(plan, c, tmp_path, Hub(), "tok")
    assert record.outcome.verdict.value == "n/a" and "no child processes" in record.outcome.summary
    assert record.environment["decided"].startswith("before provisioning")
    assert (tmp_path / "results.jsonl").exists()

