"""Verdict statistics, aggregation and the result record's round trip."""

from __future__ import annotations

import json

import pytest

from lab.results import ResultRecord, append_record, create_run_dir, read_records
from lab.verdict import Outcome, Verdict, aggregate, describe_rate, wilson_interval


def test_wilson_zero_of_200_reads_as_rate_below_two_percent():
    low, high = wilson_interval(0, 200)
    assert low == 0.0 and 0.015 < high < 0.02
    assert describe_rate(0, 200).startswith("0/200 (rate below 1.9%")


def test_wilson_three_of_fifty_is_not_always():
    low, high = wilson_interval(3, 50)
    assert 0.02 < low < 0.03 and 0.16 < high < 0.17
    assert wilson_interval(5, 5)[1] == 1.0


def test_aggregate_keeps_the_rare_bug_as_headline():
    attempts = [Outcome(Verdict.PASS)] * 9 + [Outcome(Verdict.BUG, signature="sentinel")]
    out = aggregate(attempts)
    assert out.verdict == Verdict.BUG and out.signature == "sentinel"
    assert "1/10" in out.summary
    rates = {(r["verdict"], r["signature"]): r for r in out.metrics["rates"]}
    assert rates[("bug", "sentinel")]["first_attempt"] == 10
    assert rates[("pass", None)]["k"] == 9
    assert out.also == ["pass"]


def test_error_is_not_a_finding():
    assert not Verdict.ERROR.is_finding and not Verdict.NA.is_finding
    assert Verdict.BUG.is_finding


def test_unknown_verdict_names_allowed_values():
    with pytest.raises(ValueError, match="allowed: pass, bug"):
        Verdict.parse("passed")


def make_record(cell_id="c1", verdict=Verdict.PASS) -> ResultRecord:
    return ResultRecord(run_id="r", cell_id=cell_id, cell={"celery": "5.6.2"},
                        outcome=Outcome(verdict, "s", None, {"x": 1.5}, {"log": "<b>"}),
                        versions={"celery": "5.6.2"}, journal=[{"event": "worker_ready", "mono": 1.0}])


def test_record_round_trips_through_json():
    record = make_record()
    assert ResultRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_append_and_read_skip_torn_line(tmp_path):
    run_dir = create_run_dir(tmp_path, "run-1")
    append_record(run_dir, make_record("a"))
    append_record(run_dir, make_record("b", Verdict.ERROR))
    with open(run_dir / "results.jsonl", "a") as fh:
        fh.write('{"run_id": "r", "cell_id": "torn"')  # killed mid-write
    records = list(read_records([run_dir]))
    assert [r.cell_id for r in records] == ["a", "b"]
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
