"""The shutdown checker on synthetic observations: each documented rule, one deviation at a time."""

from __future__ import annotations

from lab import catalog
from lab.scenarios.shutdown_semantics import PLANS, classify_tasks, judge, ledger
from lab.verdict import Verdict

S0 = 100.0      # first signal
DRAIN = 200.0   # the drain worker started


def ev(event, mono, key=None, task_id=None, **extra):
    return {"event": event, "mono": mono, "key": key, "task_id": task_id, **extra}


def run(plan="term", *, running_end=105.0, prefetched_drained=True, extra_events=(), acks_late=False,
        exit_code=0, exit_s=5.2, signals=None, shutdown_lines=None, orphans=(), cut=False,
        cut_redelivered=False, signatures=()):
    sent = {"t-run-0": "run-0", "t-run-1": "run-1", "t-pre-0": "pre-0", "t-pre-1": "pre-1"}
    events = []
    for key in ("run-0", "run-1"):
        events += [ev("task_received", 98.0, task_id=f"t-{key}"), ev("exec_start", 99.0, key)]
        if not cut:
            events.append(ev("exec_end", running_end, key))
        elif cut_redelivered:
            events += [ev("exec_start", DRAIN + 1, key), ev("exec_end", DRAIN + 7, key)]
    for key in ("pre-0", "pre-1"):
        events.append(ev("task_received", 99.5, task_id=f"t-{key}"))
        if prefetched_drained:
            events += [ev("exec_start", DRAIN + 1, key), ev("exec_end", DRAIN + 1.3, key)]
    events += list(extra_events)
    sigs = signals or PLANS[plan]["signals"]
    monos = [S0 + i for i in range(len(sigs))]
    semantics = PLANS[plan]["semantics"]
    line = {"warm": "worker: Warm shutdown (MainProcess)", "cold": "worker: Cold shutdown (MainProcess)",
            "soft": "worker: Cold shutdown (MainProcess)"}[semantics]
    return {"plan": plan, "ready": True, "settings": {"task_acks_late": acks_late},
            "signal_monos": monos, "signals_sent": sigs, "exit_code": exit_code,
            "exit_signal": None, "exit_s": exit_s, "orphans": list(orphans),
            "shutdown_lines": shutdown_lines if shutdown_lines is not None else [line],
            "log_tail": "", "loud_lines": [], "signatures": list(signatures),
            "events": ledger(events, sent, monos, DRAIN), "drain_ready": True, "drain_s": 12}


def test_warm_as_documented_is_pass():
    out = judge(run("term"))
    assert out.verdict == Verdict.PASS, out.summary
    assert "2 of 2 running finished, 2 prefetched requeued, exit 0" in out.summary
    assert out.metrics["n_running"] == 2 and out.metrics["n_prefetched"] == 2


def test_warm_with_exit_1_is_a_finding():
    out = judge(run("term", exit_code=1))
    assert out.verdict == Verdict.BUG and out.signature == "warm-exit-code:1"


def test_sigint_exits_1_by_design():
    """celery/apps/worker.py: install_worker_int_handler(..., exitcode=EX_FAILURE)."""
    assert judge(run("int", exit_code=1)).verdict == Verdict.PASS
    out = judge(run("int", exit_code=0))
    assert out.verdict == Verdict.BUG and out.signature == "warm-exit-code:0"


def test_task_started_after_the_signal():
    late = [ev("exec_start", S0 + 5.5, "pre-0"), ev("exec_end", S0 + 5.8, "pre-0")]
    out = judge(run("term", extra_events=late))
    assert "bug:started-after-signal" in out.finding_keys()
    assert "pre-0 +5.5s" in out.summary
    # pre-0 also ran again in the drain worker: a duplicate heads a timing-free deviation (HEADLINE_ORDER)
    assert out.verdict == Verdict.DUPLICATE and out.signature == "duplicate-execution"
    assert "bug" in out.also


def test_warm_cut_running_task_lost_under_early_ack():
    out = judge(run("term", cut=True, exit_s=1.0))
    assert out.verdict == Verdict.LOST
    assert "warm-cut-running-task" in out.metrics["deviations"]


def test_cold_stops_at_once_early_ack_loss_is_documented():
    out = judge(run("quit", cut=True, exit_s=0.8))
    assert out.verdict == Verdict.PASS, out.summary
    assert "2 stopped (2 lost; early ack: as documented)" in out.summary


def test_cold_with_acks_late_must_requeue_cut_tasks():
    lost = judge(run("quit", cut=True, exit_s=0.8, acks_late=True))
    assert lost.verdict == Verdict.LOST and lost.signature == "unacked-task-lost"
    requeued = judge(run("quit", cut=True, cut_redelivered=True, exit_s=0.8, acks_late=True))
    assert requeued.verdict == Verdict.PASS, requeued.summary


def test_cold_that_waits_for_running_tasks():
    out = judge(run("quit", running_end=S0 + 5.0, exit_s=5.3))
    assert out.verdict == Verdict.BUG
    assert {"cold-waited-for-running-tasks", "cold-slow-exit"} <= set(out.metrics["deviations"])


def test_term_then_quit_measures_cold_from_the_second_signal():
    out = judge(run("term-quit", cut=True, exit_s=1.6))  # QUIT at S0+1, exit 0.6 s later
    assert out.verdict == Verdict.PASS, out.summary
    slow = judge(run("term-quit", cut=True, exit_s=6.5))
    assert "cold-slow-exit" in slow.metrics["deviations"]


def test_prefetched_task_not_redelivered_is_lost():
    out = judge(run("term", prefetched_drained=False))
    assert out.verdict == Verdict.LOST and out.signature == "unacked-task-lost"
    assert "pre-0, pre-1" in out.summary


def test_hang_orphans_and_traceback():
    assert judge(run("term", exit_code=None, exit_s=None)).verdict == Verdict.HANG
    orphan = judge(run("term", orphans=[{"pid": 9, "cmd": "celery worker"}]))
    assert orphan.verdict == Verdict.BUG and orphan.signature == "orphaned-children"
    tb = judge(run("term", signatures=[{"name": "unknown:KeyError@x.py:f", "title": "KeyError traceback",
                                        "excerpt": "Traceback...", "severity": "bug"}]))
    assert tb.signature == "unknown:KeyError@x.py:f"


def test_soft_shutdown_must_let_running_tasks_finish():
    ok = judge(run("soft-quit", exit_s=8.4))
    assert ok.verdict == Verdict.PASS, ok.summary
    assert ok.metrics["exit_after_last_task_s"] == 3.4
    cut = judge(run("soft-quit", cut=True, exit_s=8.2))
    assert "soft-cut-running-task" in cut.metrics["deviations"]


def test_not_ready_goes_to_the_start_checker():
    out = judge({"plan": "term", "ready": False, "exit_code": 0, "loud_lines": [], "signatures": [],
                 "exit_desc": "exit 0 after 1.0s"})
    assert out.verdict == Verdict.SILENT_EXIT


def test_classify_tasks_buckets():
    obs = run("term")
    buckets = classify_tasks(obs["events"])
    assert buckets["running"] == ["run-0", "run-1"] and buckets["prefetched"] == ["pre-0", "pre-1"]
    assert buckets["requeued"] == ["pre-0", "pre-1"] and not buckets["lost"]


def test_plans_match_the_catalog():
    assert tuple(PLANS) == catalog.SCENARIOS["shutdown"].modes


def test_not_drained_means_requeue_unknown_not_lost():
    obs = run("quit", cut=True, exit_code=None, exit_s=None, prefetched_drained=False)
    obs["events"] = ledger([e for e in []], {}, obs["signal_monos"], None)
    out = judge(obs)
    assert out.verdict == Verdict.HANG and "unacked-task-lost" not in out.metrics["deviations"]


def test_parked_in_redis_unacked_is_incomplete_not_lost():
    obs = run("quit", cut=True, exit_s=0.8, acks_late=True)
    sent = {row["task_id"]: key for key, row in obs["events"]["keys"].items()}
    events = [ev("task_received", 98.0, task_id="t-run-0"), ev("exec_start", 99.0, "run-0"),
              ev("task_received", 98.0, task_id="t-run-1"), ev("exec_start", 99.0, "run-1"),
              ev("task_received", 99.5, task_id="t-pre-0"), ev("exec_start", DRAIN + 1, "pre-0"),
              ev("exec_end", DRAIN + 2, "pre-0"), ev("task_received", 99.5, task_id="t-pre-1"),
              ev("exec_start", DRAIN + 1, "pre-1"), ev("exec_end", DRAIN + 2, "pre-1")]
    obs["events"] = ledger(events, sent, obs["signal_monos"], DRAIN, parked_ids=["t-run-0", "t-run-1"])
    out = judge(obs)
    assert out.verdict == Verdict.INCOMPLETE and out.signature == "unacked-task-parked", out.summary
    assert "prediction, not observed" in out.summary


def test_unacked_task_failed_by_the_shutdown():
    obs = run("quit", cut=True, exit_s=0.8, acks_late=True)
    sent = {row["task_id"]: key for key, row in obs["events"]["keys"].items()}
    events = [ev("task_received", 98.0, task_id="t-run-0"), ev("exec_start", 99.0, "run-0"),
              ev("task_failure", 100.5, task_id="t-run-0", exception="NotImplementedError()"),
              ev("task_received", 98.0, task_id="t-run-1"), ev("exec_start", 99.0, "run-1"),
              ev("exec_start", DRAIN + 1, "run-1"), ev("exec_end", DRAIN + 7, "run-1")]
    for key in ("pre-0", "pre-1"):
        events += [ev("task_received", 99.5, task_id=f"t-{key}"), ev("exec_start", DRAIN + 1, key),
                   ev("exec_end", DRAIN + 2, key)]
    obs["events"] = ledger(events, sent, obs["signal_monos"], DRAIN, parked_ids=[])
    out = judge(obs)
    assert out.verdict == Verdict.BUG and out.signature == "unacked-task-failed", out.summary
    assert "NotImplementedError" in out.evidence["evidence:unacked-task-failed"]
