"""lab.lanes.LaneGate: admission by measured CPU load, with a ramp after each admission."""

import os
import time

from lab import lanes
from lab.lanes import LaneGate


def gate_with_load(load: float, **kwargs) -> LaneGate:
    gate = LaneGate(auto=True, **kwargs)
    gate.close()  # no sampler: the test sets the load
    gate._samples = [load] * lanes.WINDOW
    return gate


def test_auto_limit_is_per_core_and_the_first_cell_always_starts():
    gate = gate_with_load(1.0)
    assert gate.limit == lanes.AUTO_LANES_PER_CORE * (os.cpu_count() or 1)
    assert gate._may_start(0.0)  # nothing runs: always


def test_a_busy_host_admits_no_second_cell_until_the_bound_and_then_one_per_core():
    gate = gate_with_load(0.95)
    gate.running, gate._last_admit = 1, float("-inf")
    assert not gate._may_start(0.0)
    assert gate._may_start(gate.max_wait_s) == (1 < (os.cpu_count() or 1))
    gate.running = os.cpu_count() or 1
    assert not gate._may_start(gate.max_wait_s + 60)  # busy and a lane per core: keep waiting


def test_an_idle_host_admits_again_only_after_the_ramp():
    gate = gate_with_load(0.1)
    gate.running, gate._last_admit = 1, time.monotonic()
    assert not gate._may_start(0.0)  # the load window has not seen the last cell yet
    gate._last_admit = time.monotonic() - lanes.SAMPLE_S - 0.01
    assert gate._may_start(0.0)  # quiet: one fresh sample is enough


def test_a_host_past_quiet_waits_the_whole_ramp():
    gate = gate_with_load(0.65)  # under busy (0.7), over QUIET x busy (0.595)
    gate.running, gate._last_admit = 1, time.monotonic() - lanes.SAMPLE_S - 0.01
    assert not gate._may_start(0.0)
    gate._last_admit = time.monotonic() - lanes.RAMP_S - 0.01
    assert gate._may_start(0.0)
    gate.running = gate.limit
    assert not gate._may_start(0.0)
