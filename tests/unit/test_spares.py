"""Spare RabbitMQ nodes (lab.services.spares): the claim protocol and the schedule that spreads
their cells; the nodes themselves are booted in tests/integration/test_broker_fault.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab.matrix import Cell
from lab.runner import spread
from lab.services.spares import Adopted, claim


def _cell(name: str) -> Cell:
    return Cell("5.6.2", "prefork", "amqp" if name.startswith("a") else "redis", "redis", "broker-fault",
                "defaults", name)


def test_spread_keeps_both_orders_and_spaces_the_wanted_cells_out():
    cells = [_cell(n) for n in ["a1", "a2", "a3"] + [f"r{i}" for i in range(10)]]
    out = spread(cells, lambda c: c.broker == "amqp")
    modes = [c.mode for c in out]
    assert sorted(modes) == sorted(c.mode for c in cells)
    assert [m for m in modes if m.startswith("a")] == ["a1", "a2", "a3"]
    assert [m for m in modes if m.startswith("r")] == [f"r{i}" for i in range(10)]
    assert modes.index("a1") == 2 and modes.index("a2") == 5  # one every int(10 * 0.6 / 3) = 2 others


def test_spread_without_wanted_or_without_others_changes_nothing():
    cells = [_cell("r1"), _cell("r2")]
    assert spread(cells, lambda c: False) == cells
    assert spread(cells, lambda c: True) == cells


def _ready(tmp_path, node_id: str, pid: int) -> None:
    (tmp_path / "ready").mkdir(parents=True, exist_ok=True)
    (tmp_path / "ready" / f"{node_id}.json").write_text(json.dumps({"id": node_id, "pid": pid}))


def test_a_ready_node_is_claimed_once_and_moves_into_the_cell(tmp_path):
    _ready(tmp_path, "n001", os.getpid())
    first = claim(tmp_path, tmp_path / "cell-a")
    assert first["id"] == "n001" and (tmp_path / "cell-a" / "spare-n001.json").exists()
    assert claim(tmp_path, tmp_path / "cell-b") is None  # nothing left: that cell boots its own
    assert claim(None, tmp_path / "cell-c") is None and claim(tmp_path / "absent", tmp_path / "c") is None


def test_a_dead_node_is_not_handed_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _ready(tmp_path, "n002", proc.pid)
    assert claim(tmp_path, tmp_path / "cell") is None


def test_adopted_counts_a_zombie_as_ended_and_bounds_its_wait():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    handle = Adopted(proc.pid)
    try:
        assert handle.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            handle.wait(0.2)
        proc.kill()
        assert handle.wait(5) is not None  # a zombie (not yet reaped by its parent) has ended
    finally:
        proc.kill()
        proc.wait()
