"""Issue 13's six failing inputs, pinned: each judge's answer on recorded observations.

Every row asserts the verdict, the headline signature and a fact of the
summary or findings; the observations are shaped as the scenarios record
them (lab/scenarios/*.py `run`).
"""

from __future__ import annotations

from lab.report.diff import compare
from lab.results import ResultRecord
from lab.scenarios.chord_stall import SCENARIO as CHORD_STALL
from lab.scenarios.eviction import SCENARIO as EVICTION
from lab.observers.exit import judge_start_failure
from lab.scenarios.shutdown_semantics import judge as judge_shutdown
from lab.verdict import Finding, Outcome, Verdict, aggregate, headline
from .test_chord_stall_checker import obs as chord_obs
from .test_eviction_checker import obs as eviction_obs
from .test_shutdown_semantics import DRAIN, ev, ledger, run

SOFT_PROFILE = {"task_acks_late": True, "worker_soft_shutdown_timeout": 3.0}
SOFT_LINES = ["worker: Soft shutdown (MainProcess)", "Soft shutdown: waiting 3.0 seconds for running tasks",
              "worker: Cold shutdown (MainProcess)", "Restoring 6 unacknowledged message(s)"]
BLOCKING = {"name": "unrecoverable:BlockingSwitchOutError@worker.py:wait_for_soft_shutdown", "known": False,
            "title": "Unrecoverable error: BlockingSwitchOutError", "severity": "bug",
            "excerpt": "Unrecoverable error: BlockingSwitchOutError('Impossible to call blocking function in "
                       "the event loop callback')\n  File \".../celery/worker/worker.py\", in wait_for_soft_shutdown"}


def soft_remap_obs(**kw):
    obs = run("remap-term", acks_late=True, cut=True, cut_redelivered=True, shutdown_lines=SOFT_LINES, **kw)
    obs["settings"] = dict(SOFT_PROFILE)
    obs["effective"] = {"REMAP_SIGTERM": "SIGQUIT", "worker_soft_shutdown_timeout": 3.0}
    return obs


def test_1_soft_shutdown_from_the_profile_is_judged_soft_and_passes():
    out = judge_shutdown(soft_remap_obs(exit_s=4.2))
    assert out.verdict == Verdict.PASS, out.summary
    assert out.summary.startswith("soft (3s) shutdown as documented")
    assert out.metrics["semantics"] == "soft" and out.findings == []


def test_1_without_the_profile_the_same_plan_is_cold_and_slow():
    obs = soft_remap_obs(exit_s=4.2)
    obs["settings"], obs["effective"] = {"task_acks_late": True}, {"REMAP_SIGTERM": "SIGQUIT"}
    out = judge_shutdown(obs)
    assert out.metrics["semantics"] == "cold"
    assert "stall:cold-slow-exit" in out.finding_keys()


def test_2_the_crash_heads_the_timing_symptom_it_caused():
    obs = soft_remap_obs(exit_s=9.5, signatures=[BLOCKING], exit_code=1)
    out = judge_shutdown(obs)
    assert out.verdict == Verdict.BUG and out.signature == BLOCKING["name"], out.summary
    assert out.findings[0].crash
    assert "stall:soft-slow-exit" in out.finding_keys()  # the symptom is kept, not headlined
    repeated = aggregate([out, judge_shutdown(soft_remap_obs(exit_s=4.0))])
    assert repeated.signature == BLOCKING["name"] and "1/2" in repeated.summary


def _term_gevent(duplicate: bool) -> Outcome:
    late = [ev("exec_start", 100.5, "pre-0"), ev("exec_end", 100.8, "pre-0")]
    if not duplicate:
        obs = run("term", acks_late=True, extra_events=late, prefetched_drained=False)
        sent = {row["task_id"]: key for key, row in obs["events"]["keys"].items()}
        events = [ev("task_received", 98.0, task_id="t-run-0"), ev("exec_start", 99.0, "run-0"),
                  ev("exec_end", 105.0, "run-0"), ev("task_received", 98.0, task_id="t-run-1"),
                  ev("exec_start", 99.0, "run-1"), ev("exec_end", 105.0, "run-1"),
                  ev("task_received", 99.5, task_id="t-pre-0"), *late,
                  ev("task_received", 99.5, task_id="t-pre-1"), ev("exec_start", DRAIN + 1, "pre-1"),
                  ev("exec_end", DRAIN + 1.3, "pre-1")]
        obs["events"] = ledger(events, sent, obs["signal_monos"], DRAIN)
        return judge_shutdown(obs)
    return judge_shutdown(run("term", acks_late=True, extra_events=late))


def _record(cell_id: str, outcome: Outcome) -> ResultRecord:
    return ResultRecord("r", cell_id, {"scenario": "shutdown"}, outcome)


def test_3_a_second_finding_under_the_same_headline_is_a_change():
    on_540, on_550 = _term_gevent(duplicate=True), _term_gevent(duplicate=False)
    assert "bug:started-after-signal" in on_540.finding_keys() & on_550.finding_keys()
    assert "duplicate:duplicate-execution" in on_540.finding_keys()
    assert "duplicate:duplicate-execution" not in on_550.finding_keys()
    diff = compare([_record("c", on_550)], [_record("c", on_540)])
    assert len(diff.changed) == 1 and diff.changed[0].kind == "better"
    assert diff.changed[0].findings_removed == ["duplicate:duplicate-execution"]
    same_headline = Outcome.of([Finding(Verdict.BUG, "started-after-signal")])
    more = Outcome.of([Finding(Verdict.BUG, "started-after-signal"), Finding(Verdict.BUG, "orphaned-children")])
    change = compare([_record("c", more)], [_record("c", same_headline)]).changed[0]
    assert change.kind == "worse" and change.findings_added == ["bug:orphaned-children"]


def test_4_a_transport_that_cannot_import_is_a_setup_failure_not_a_bug():
    tail = ("Traceback (most recent call last):\n  File \".../kombu/transport/redis.py\", line 70, in <module>\n"
            "    from packaging.version import Version\nModuleNotFoundError: No module named 'packaging'")
    out = judge_start_failure({"ready": False, "exit_code": 1, "exit_desc": "exit 1", "log_tail": tail,
                               "loud_lines": ["ModuleNotFoundError: No module named 'packaging'"],
                               "signatures": [{"name": "unknown:ModuleNotFoundError@redis.py:<module>",
                                               "severity": "bug", "title": "x", "excerpt": tail}]})
    assert out.verdict == Verdict.SETUP_FAILED and out.signature == "setup:import"
    assert not out.verdict.is_finding and out.findings == [] and out.finding_keys() == frozenset()
    assert "No module named 'packaging'" in out.summary


def test_5_work_that_never_completed_is_not_a_stall():
    chord = CHORD_STALL.judge(chord_obs(mode="lost-member", callbacks=(), target_starts=(), target_ends=(),
                                        polls=[float(t) for t in range(-1, 20)], until=20.1,
                                        body_state="PENDING"))
    assert chord.verdict == Verdict.INCOMPLETE and chord.summary.startswith("never completed")
    late = EVICTION.judge(eviction_obs(callbacks=((130.0, [0, 1, 2, 3]),), long_starts=(-1.0, 125.0),
                                       long_ends=(129.0,), mode="measure-stall"))
    assert late.verdict == Verdict.STALL and late.metrics["stall_s"] == 130.0  # completed later: a stall


def _measure_stall(end: dict) -> Outcome:
    obs = eviction_obs(callbacks=(), long_ends=(), parked=True, mode="measure-stall")
    obs["observed_until_s"], obs["snapshot_end"] = 163.0, end
    return EVICTION.judge(obs)


def test_6_end_of_window_snapshot_tells_parked_from_gone():
    parked = _measure_stall({"parked_task_ids": ["long-id"], "unacked": 1})
    assert parked.verdict == Verdict.INCOMPLETE
    assert "did not hold within 163s" in parked.summary and "returns after" not in parked.summary
    gone = _measure_stall({"parked_task_ids": [], "unacked": 0, "queued_task_ids": []})
    assert gone.verdict == Verdict.LOST and "gone from the broker at the end" in gone.summary
    assert gone.metrics["observed_end"] == "gone"


def test_headline_rule_order():
    findings = [Finding(Verdict.STALL, "slow"), Finding(Verdict.BUG, "deviation"),
                Finding(Verdict.HANG, "hang"), Finding(Verdict.DUPLICATE, "twice"),
                Finding(Verdict.LOST, "lost"), Finding(Verdict.BUG, "trace", crash=True)]
    order = []
    while findings:
        top = headline(findings)
        order.append(top.signature)
        findings.remove(top)
    assert order == ["trace", "lost", "twice", "hang", "deviation", "slow"]


def test_aggregate_keeps_k_of_n_per_finding_and_ignores_attempts_that_never_ran():
    both = Outcome.of([Finding(Verdict.BUG, "started-after-signal"), Finding(Verdict.DUPLICATE, "dup")])
    one = Outcome.of([Finding(Verdict.BUG, "started-after-signal")])
    out = aggregate([both, one, Outcome(Verdict.PASS)])
    rates = {(r["verdict"], r["signature"]): (r["k"], r["n"]) for r in out.metrics["rates"]}
    assert rates == {("bug", "started-after-signal"): (2, 3), ("duplicate", "dup"): (1, 3), ("pass", None): (1, 3)}
    assert out.verdict == Verdict.DUPLICATE and out.finding_keys() == {"bug:started-after-signal", "duplicate:dup"}
    setup = Outcome(Verdict.SETUP_FAILED, "no module", "setup:import")
    assert aggregate([setup]).verdict == Verdict.SETUP_FAILED
    mixed = aggregate([one, setup])
    assert mixed.verdict == Verdict.SETUP_FAILED and mixed.metrics["attempts"] == 1


def test_findings_round_trip_through_a_record():
    out = Outcome.of([Finding(Verdict.BUG, "x", "words", {"evidence": "e"}, crash=True),
                      Finding(Verdict.STALL, "y", "slow")])
    back = Outcome.from_dict(out.to_dict())
    assert back == out and back.findings[0].crash and back.evidence["evidence:x"] == "e"
    old = Outcome.from_dict({"verdict": "bug", "signature": "s", "summary": "old record"})
    assert old.finding_keys() == {"bug:s"}


def test_bisect_predicate_reads_every_finding_and_counts_attempts_once():
    from lab.triage import matches
    one = _record("c", Outcome.of([Finding(Verdict.DUPLICATE, "twice"), Finding(Verdict.BUG, "started-after-signal")]))
    assert matches(one, [], "started-after-signal") == (1, 1)  # not the headline, still a finding
    both = Outcome.of([Finding(Verdict.BUG, "a"), Finding(Verdict.STALL, "b")])
    rec = _record("c", aggregate([both, Outcome(Verdict.PASS), Outcome.of([Finding(Verdict.BUG, "a")])]))
    assert matches(rec, ["bug", "stall"], None) == (2, 3)  # attempt 1 has two findings: counted once


def test_soft_shutdown_sleeps_its_whole_timeout_before_the_cold_exit():
    """celery/worker/worker.py wait_for_soft_shutdown sleeps worker_soft_shutdown_timeout in full
    once a request was active, so an exit 10 s after SIGQUIT with an 8 s timeout is as documented."""
    out = judge_shutdown(run("soft-quit", exit_s=10.2))
    assert out.verdict == Verdict.PASS, out.summary
    assert "stall:soft-slow-exit" in judge_shutdown(run("soft-quit", exit_s=13.5)).finding_keys()
