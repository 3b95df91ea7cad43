"""Triage and bisect with axes, and honest sides (issue 12's failing inputs 1 and 3)."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from lab import pkgindex
from lab.cli import main
from lab.matrix import parse_matrix
from lab.results import ResultRecord
from lab.sides import never_ran, setup_failed_outcome
from lab.triage import TriageSpec, bisect, decide
from lab.verdict import Outcome, Verdict, aggregate

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SENTINEL = "sentinel-poll-attributeerror"
IMPORT_TB = ('Traceback (most recent call last):\n  File ".../kombu/transport/redis.py", line 12, in <module>\n'
             "ModuleNotFoundError: No module named 'packaging'")


def spec_cell(spec: TriageSpec):
    (cell,) = parse_matrix(tomllib.loads(spec.toml()), "triage.toml", "triage").cells()
    return cell


def record(outcomes, ready=None, scenario="shutdown-race", celery="5.3.6", cell_deps=None) -> ResultRecord:
    env = {"attempts_ready": ready} if ready is not None else {}
    return ResultRecord(run_id="r", cell_id="c", outcome=aggregate(outcomes), environment=env,
                        cell={"scenario": scenario, "celery": celery, "deps": cell_deps or {}})


def never_started(n=2) -> ResultRecord:
    """What failing input 1 recorded on 5.3.6/5.4.0: the worker died importing kombu's redis transport."""
    out = Outcome(Verdict.BUG, "failed at start-up (exit 1): ModuleNotFoundError",
                  "unknown:ModuleNotFoundError@redis.py:<module>", evidence={"traceback": IMPORT_TB})
    return record([out] * n, ready=[False] * n)


# failing input 3: triage can pin --------------------------------------------------------------------

def test_triage_pins_reach_the_cell_and_its_set():
    spec = TriageSpec("shutdown", "5.6.2", profile="acks-late", mode="quit", repeats=3,
                      pins={"billiard": "4.3.0"})
    cell = spec_cell(spec)
    assert cell.cell_id.endswith("--billiard-4.3.0")
    assert "billiard==4.3.0" in cell.depset().requirements() and cell.depset().key == "5.6.2-billiard4.3.0"


def test_triage_cli_parses_pins_python_and_matrix(monkeypatch, tmp_path):
    seen = {}

    def fake(spec, reports):
        seen["spec"] = spec
        return record([Outcome(Verdict.PASS, "ok")], ready=[True])

    monkeypatch.setattr("lab.triage.run_triage", fake)
    result = CliRunner().invoke(main, ["triage", "shutdown", "--celery", "5.6.2", "--profile", "acks-late",
                                       "--mode", "quit", "--pin", "billiard==4.3.0", "--python", "3.12",
                                       "-n", "2"])
    assert result.exit_code == 0, result.output
    spec = seen["spec"]
    assert (spec.pins, spec.python, spec.repeats) == ({"billiard": "4.3.0"}, "3.12", 2)
    assert spec_cell(spec).depset().key == "5.6.2-py3.12-billiard4.3.0"
    bad = CliRunner().invoke(main, ["triage", "shutdown", "--celery", "5.6.2", "--pin", "billiard>=4"])
    assert bad.exit_code == 2 and "--pin" in bad.output


def test_triage_applies_era_pins_and_borrows_a_matrix():
    plain = spec_cell(TriageSpec("shutdown-race", "5.3.6", profile="quit", mode="targeted+kill-child"))
    assert "kombu==5.3.7" in plain.depset().requirements()        # the lab's era pin, by default
    unpinned = spec_cell(TriageSpec("shutdown-race", "5.3.6", pins={"kombu": "unpinned"}))
    assert not any(r.startswith("kombu==") for r in unpinned.depset().requirements())
    borrowed = TriageSpec("lifecycle-smoke", "5.3.6", matrix_file="default")
    data = borrowed.matrix_data()
    assert data["pins"]["5.3.6"]["kombu"] == "5.3.7"
    text = TriageSpec("eviction", "5.6.2", profile="acks-late", pins={"packaging": "26.3"}).toml()
    assert 'extra = "packaging==26.3"' in text


# failing input 1: a side that never started is neither good nor bad ------------------------------

def test_never_ran_sees_a_worker_that_never_started():
    assert never_ran(never_started()) and "never reached ready" in never_ran(never_started())
    one = Outcome(Verdict.BUG, "failed at start-up", "unknown:ModuleNotFoundError@redis.py:<module>",
                  evidence={"traceback": IMPORT_TB})
    assert "could not import its transport" in never_ran(record([one]))          # no ready list: the log
    assert never_ran(record([setup_failed_outcome("pip failed")]))
    assert never_ran(record([Outcome(Verdict.NA, "no children")]))
    assert never_ran(record([Outcome(Verdict.PASS, "ok")] * 2, ready=[True, True])) is None
    start = record([Outcome(Verdict.SILENT_EXIT, "exit 0", "silent-exit")], ready=[False], scenario="silent-exit")
    assert never_ran(start) is None   # for silent-exit, not reaching ready is the finding


def test_decide_never_calls_a_never_started_side_good():
    verdict, words = decide(never_started(), ["bug"], SENTINEL)
    assert verdict is None and "never ran" in words
    assert decide(record([Outcome(Verdict.BUG, "x", SENTINEL)] * 2, ready=[True, True]), ["bug"], SENTINEL)[0]
    assert decide(record([Outcome(Verdict.PASS)] * 2, ready=[True, True]), ["bug"], SENTINEL)[0] is False


def test_bisect_stops_when_a_side_never_started(monkeypatch):
    """5.3.6 and 5.4.0 never started (kombu 5.7.0's transport): the bisect must not call them good."""
    def fake(spec, reports):
        if spec.celery.startswith(("5.3", "5.4")):
            return never_started()
        return record([Outcome(Verdict.BUG, "crash", SENTINEL)] * 2, ready=[True, True])

    monkeypatch.setattr("lab.triage.run_triage", fake)
    logged = []
    result = bisect(TriageSpec("shutdown-race", "x", profile="quit", mode="targeted+kill-child", repeats=2),
                    "5.3.6", "5.5.3", ["bug"], SENTINEL, None, ["5.3.6", "5.4.0", "5.5.0", "5.5.3"],
                    log=logged.append)
    assert result["first_bad"] is None and result["last_good"] is None
    assert list(result["never_ran"]) == ["5.3.6"]
    assert "bisect stopped" in result["note"] and "neither good nor bad" in result["note"]
    assert any("5.3.6: the scenario never ran" in line for line in logged)


def test_bisect_cli_exits_3_and_says_why(monkeypatch):
    monkeypatch.setattr("lab.triage.run_triage", lambda spec, reports: never_started())
    result = CliRunner().invoke(main, ["bisect", "shutdown-race", "--good", "5.3.6", "--bad", "5.5.3",
                                       "--signature", SENTINEL, "--versions", "5.3.6,5.5.3", "-n", "2"])
    assert result.exit_code == 3 and "never ran" in result.output and "first bad" not in result.output


# bisect over a dependency -----------------------------------------------------------------------

def test_bisect_walks_a_dependency_with_celery_fixed(monkeypatch):
    pins_seen = []

    def fake(spec, reports):
        assert spec.celery == "5.6.2"
        pins_seen.append(spec.pins["billiard"])
        broken = pkgindex.version_key(spec.pins["billiard"]) >= pkgindex.version_key("4.2.3")
        return record([Outcome(Verdict.BUG if broken else Verdict.PASS, "", SENTINEL if broken else None)] * 2,
                      ready=[True, True])

    monkeypatch.setattr("lab.triage.run_triage", fake)
    result = bisect(TriageSpec("shutdown-race", "5.6.2", pins={"kombu": "5.6.2"}), "4.2.1", "4.3.0", ["bug"],
                    SENTINEL, None, ["4.3.0", "4.2.4", "4.2.3", "4.2.2", "4.2.1", "4.3.0rc1"],
                    log=lambda *_: None, dependency="billiard")
    assert (result["last_good"], result["first_bad"]) == ("4.2.2", "4.2.3")
    assert pins_seen[:2] == ["4.3.0", "4.2.1"]


def test_bisect_dependency_cli_requires_celery():
    result = CliRunner().invoke(main, ["bisect", "shutdown-race", "--dependency", "billiard", "--good", "4.2.4",
                                       "--bad", "4.3.0"])
    assert result.exit_code == 2 and "--dependency needs --celery" in result.output


def test_index_versions_sort_by_pep440_and_drop_prereleases():
    got = pkgindex.between(["4.10.0", "4.9.0", "4.2.4", "4.3.0rc1", "4.3.0", "4.2.4.post1", "5.0.0"],
                           "4.2.4", "4.10.0")
    assert got == ["4.2.4", "4.3.0", "4.9.0", "4.10.0"]


def test_index_listing_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(pkgindex, "_ask_index", lambda name: calls.append(name) or ["4.2.4", "4.3.0"])
    assert pkgindex.list_versions("billiard") == ["4.2.4", "4.3.0"]
    assert pkgindex.list_versions("billiard") == ["4.2.4", "4.3.0"] and calls == ["billiard"]


def test_triage_borrows_nested_profiles_and_round_trips(tmp_path):
    source = tmp_path / "mine.toml"
    source.write_text('[matrix]\ncelery = ["5.6.2"]\nscenarios = ["eviction"]\n\n'
                      '[profiles.mine]\nsettings = {task_acks_late = true, task_annotations = {"lab.member" = '
                      '{default_retry_delay = 1}}}\nenv = {X = "a \\"b\\""}\n\n[pins."5.6.2"]\nbilliard = "4.2.4"\n')
    spec = TriageSpec("eviction", "5.6.2", profile="mine", matrix_file=str(source), pins={"kombu": "5.6.2"})
    matrix = parse_matrix(tomllib.loads(spec.toml()), "triage.toml", "triage")
    (cell,) = matrix.cells()
    assert matrix.profile("mine")["settings"]["task_annotations"] == {"lab.member": {"default_retry_delay": 1}}
    assert matrix.profile("mine")["env"] == {"X": 'a "b"'}
    assert cell.deps == {"billiard": "4.2.4", "kombu": "5.6.2"}


def test_triage_cli_exits_3_when_the_scenario_never_ran(monkeypatch):
    monkeypatch.setattr("lab.triage.run_triage", lambda spec, reports: never_started())
    result = CliRunner().invoke(main, ["triage", "shutdown-race", "--celery", "5.3.6", "-n", "2"])
    assert result.exit_code == 3 and "THE SCENARIO NEVER RAN" in result.output
    assert "era pins for celery 5.3.6 (kombu==5.3.7, packaging==26.3)" in result.output
    from lab.triage import describe
    overridden = describe(record([Outcome(Verdict.PASS)], ready=[True], cell_deps={"kombu": "unpinned"}))
    assert any("era pins for celery 5.3.6 (packaging==26.3)" in line for line in overridden)
