"""Validation refuses before anything starts (issue 16, inputs 4 and 5): bounds
with their reason, a profile the scenario cannot run, a plan over budget, a
Celery version that is not a release — and no run dir, no moved
reports/latest, for a refused plan."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.matrix import MatrixError, parse_matrix
from lab.releases import RELEASES_ENV, IndexUnreachable, check_releases


def matrix_data(**over):
    data = {"matrix": {"celery": ["5.6.2"], "pools": ["solo"], "brokers": ["redis"],
                       "scenarios": ["lifecycle-smoke"], **over}}
    return data


@pytest.mark.parametrize("field, value, bound", [
    ("repeats", 1_000_000_000, "1..1000"), ("lanes", 500, "1..16"), ("concurrency", 100_000, "1..64"),
    ("repeats", 0, "positive"), ("budget_minutes", 10**9, "one week"),
])
def test_absurd_values_are_refused_with_the_bound_and_why(field, value, bound):
    with pytest.raises(MatrixError) as err:
        parse_matrix(matrix_data(**{field: value}), "m.toml", "m")
    assert f"m.toml: matrix.{field}: " in str(err.value) and bound in str(err.value)
    if field != "budget_minutes" and value:
        assert ": " in str(err.value).split(bound, 1)[1]  # the reason follows the bound


def test_slice_repeats_are_bounded_too():
    data = {**matrix_data(), "scenario": {"lifecycle-smoke": {"repeats": 5000}}}
    with pytest.raises(MatrixError, match=r"scenario.lifecycle-smoke.repeats: 5000 is outside 1..1000"):
        parse_matrix(data, "m.toml", "m")


def test_a_profile_the_scenario_does_not_take_is_refused():
    data = {**matrix_data(pools=["prefork"], scenarios=["shutdown-race"]),
            "scenario": {"shutdown-race": {"profiles": ["acks-late"]}}}
    with pytest.raises(MatrixError) as err:
        parse_matrix(data, "m.toml", "m")
    assert "scenario.shutdown-race.profiles[0]: unknown value 'acks-late'" in str(err.value)
    assert "allowed: quit, term, term-remap-quit, term-then-quit" in str(err.value)


def test_matrix_defined_profiles_still_fit_scenarios_that_take_profiles():
    data = {**matrix_data(pools=["prefork"], scenarios=["shutdown-race"]),
            "profiles": {"mine": {"env": {"LAB_RACE_SIGNALS": "INT"}}},
            "scenario": {"shutdown-race": {"profiles": ["mine", "quit"]}}}
    matrix = parse_matrix(data, "m.toml", "m")
    assert {c.profile for c in matrix.cells()} == {"mine", "quit"}


def write(tmp_path, **over):
    path = tmp_path / "m.toml"
    head = matrix_data(**over)["matrix"]
    path.write_text("[matrix]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in head.items()) + "\n")
    return path


def test_plan_over_budget_is_refused_before_a_run_dir_unless_over_budget(tmp_path):
    matrix = write(tmp_path, repeats=100, budget_minutes=1)
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, ["plan", "--matrix", str(matrix), "--reports", str(reports)])
    assert result.exit_code == 2, result.output
    assert re.search(r"matrix.budget_minutes: the plan's estimate, [\d.]+ min, exceeds the budget of 1 min",
                     result.output)
    assert "--over-budget" in result.output and not reports.exists()
    result = CliRunner().invoke(main, ["validate", str(matrix)])
    assert result.exit_code == 2 and "exceeds the budget" in result.output
    result = CliRunner().invoke(main, ["plan", "--matrix", str(matrix), "--reports", str(reports),
                                       "--over-budget", "--run-id", "r"])
    assert result.exit_code == 0 and "running anyway" in result.output
    assert (reports / "runs" / "r" / "plan.json").exists()


def test_a_celery_that_is_not_a_release_never_gets_a_run_dir_or_latest(tmp_path):
    reports = tmp_path / "reports"
    ok = CliRunner().invoke(main, ["plan", "--matrix", str(write(tmp_path)), "--reports", str(reports),
                                   "--run-id", "good"])
    assert ok.exit_code == 0, ok.output
    result = CliRunner().invoke(main, ["plan", "--matrix", str(write(tmp_path, celery=["5.6.2", "9.9.9"])),
                                       "--reports", str(reports), "--run-id", "bad"])
    assert result.exit_code == 2, result.output
    assert "matrix.celery[1]: celery 9.9.9 is not a release according to" in result.output
    assert not (reports / "runs" / "bad").exists()
    assert (reports / "latest").resolve() == (reports / "runs" / "good").resolve()


def test_release_check_uses_the_cache_and_falls_back_to_it_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(RELEASES_ENV)
    calls = []

    def index():
        calls.append(1)
        return ["5.6.2", "5.7.0"]

    def offline():
        raise IndexUnreachable("no network")

    assert "package index" in check_releases(["5.6.2"], tmp_path, "m.toml", fetch=index)
    assert "cached release list" in check_releases(["5.7.0"], tmp_path, "m.toml", fetch=offline)
    assert len(calls) == 1  # known versions need no network
    with pytest.raises(MatrixError, match=r"matrix.celery\[0\]: celery 5.8.1 is not a release according "
                                          r"to the cached list from .* could not be reached: no network"):
        check_releases(["5.8.1"], tmp_path, "m.toml", fetch=offline)
    with pytest.raises(MatrixError, match=r"matrix.celery: cannot check the versions: .*no network.* "
                                          r"no cached list"):
        check_releases(["5.6.2"], tmp_path / "empty", "m.toml", fetch=offline)
    with pytest.raises(MatrixError, match=r"matrix.celery\[1\]: celery 9.9.9 is not a release .*checked now"):
        check_releases(["5.6.2", "9.9.9"], tmp_path, "m.toml", fetch=index)
