"""Triage/bisect logic without running workers."""

from __future__ import annotations

import sys

import pytest

from lab.matrix import parse_matrix
from lab.results import ResultRecord
from lab.triage import TriageSpec, bisect, matches, released_versions
from lab.verdict import Outcome, Verdict, aggregate

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def test_spec_toml_round_trips_into_a_valid_matrix():
    spec = TriageSpec("eviction", "5.6.2", profile="acks-late", mode="verdict", repeats=20)
    matrix = parse_matrix(tomllib.loads(spec.toml()), "t.toml", "t")
    (cell,) = matrix.cells()
    assert (cell.celery, cell.profile, cell.mode, cell.repeats) == ("5.6.2", "acks-late", "verdict", 20)


def test_released_versions_filters_and_orders():
    got = released_versions("5.3.6", "5.5.3", ["5.5.3", "5.5.0rc1", "5.4.0", "5.3.6", "5.3.5", "5.6.0"])
    assert got == ["5.3.6", "5.4.0", "5.5.3"]


def record(outcomes) -> ResultRecord:
    return ResultRecord(run_id="r", cell_id="c", cell={}, outcome=aggregate(outcomes))


def test_matches_counts_attempts():
    rec = record([Outcome(Verdict.PASS)] * 3 + [Outcome(Verdict.BUG, signature="s")])
    assert matches(rec, ["bug"], None) == (1, 4)
    assert matches(rec, ["bug"], "other") == (0, 4)


def test_bisect_finds_first_bad(monkeypatch):
    bad_from = (5, 5)
    def fake(spec, reports):
        broken = tuple(int(p) for p in spec.celery.split("."))[:2] >= bad_from
        return record([Outcome(Verdict.BUG if broken else Verdict.PASS)] * 2)
    monkeypatch.setattr("lab.triage.run_triage", fake)
    result = bisect(TriageSpec("eviction", "x"), "5.3.6", "5.7.0", ["bug"], None, None,
                    ["5.3.6", "5.4.0", "5.5.0", "5.5.3", "5.6.2", "5.7.0"], log=lambda *_: None)
    assert (result["last_good"], result["first_bad"]) == ("5.4.0", "5.5.0")
    assert "not 'fixed'" in result["note"]


def test_bisect_refuses_when_bad_does_not_reproduce(monkeypatch):
    monkeypatch.setattr("lab.triage.run_triage", lambda spec, reports: record([Outcome(Verdict.PASS)]))
    result = bisect(TriageSpec("eviction", "x"), "5.3.6", "5.7.0", ["bug"], None, None,
                    ["5.3.6", "5.7.0"], log=lambda *_: None)
    assert result["first_bad"] is None and "did not hold on --bad" in result["note"]
