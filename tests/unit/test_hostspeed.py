"""lab.hostspeed: the calibration, its log and its summary (no timing is asserted)."""

from __future__ import annotations

import json

from lab import hostspeed


def test_summary_of_samples():
    assert hostspeed.summarize([]) == {}
    assert hostspeed.summarize([0.0]) == {}  # a failed calibration is not a sample
    found = hostspeed.summarize([0.04, 0.08, 0.05])
    assert found == {"samples": 3, "median_s": 0.05, "min_s": 0.04, "max_s": 0.08, "spread": 2.0}


def test_a_failing_workload_gives_zero_not_an_error(monkeypatch):
    monkeypatch.setattr(hostspeed, "CALIBRATION", lambda: 1 / 0)
    assert hostspeed.calibrate() == 0.0


def test_the_log_samples_at_start_and_close_and_reads_back(tmp_path):
    path = tmp_path / hostspeed.SPEED_FILE
    log = hostspeed.SpeedLog(path, period_s=3600)
    log.close()
    log.close()  # idempotent
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and all(line["cpu_s"] > 0 for line in lines)
    assert hostspeed.read_samples(path) == log.samples and log.latest == log.samples[-1]
    path.write_text(path.read_text() + "not json\n")
    assert len(hostspeed.read_samples(path)) == 2
    assert hostspeed.read_samples(tmp_path / "absent.jsonl") == []
