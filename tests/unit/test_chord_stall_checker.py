"""The chord-stall checker on synthetic observations (times are s after the fault)."""

from __future__ import annotations

from types import SimpleNamespace

from lab.scenarios.chord_stall import SCENARIO, TARGET_KEY
from lab.verdict import Verdict

IDS = ["m0", "m1", "m2", "m3"]
CHORD_ERROR = "ChordError(\"Dependency m3 raised WorkerLostError('Worker exited prematurely: signal 9')\")"


def obs(mode="child-death", callbacks=((7.0, [0, 1, 2, 3]),), target_starts=(-1.0, 2.0), target_ends=(7.5,),
        failure_t=None, polls=(), errbacks=(), counter=None, parked=False, failures=(), log_lost=(),
        log_limit=(), until=10.0, body_state="SUCCESS"):
    seen = {"PENDING": {"t": 0.0, "error": None}}
    if failure_t is not None:
        seen["FAILURE"] = {"t": failure_t, "error": CHORD_ERROR}
    state = {"body_state": body_state, "member_states": ["SUCCESS"] * 4}
    if counter is not None:
        state["counter"] = counter
    return {"ready": True, "mode": mode, "pool": "prefork", "window_s": 20.0, "long_s": 5.0, "tl_s": 2.0,
            "members": 4, "member_ids": IDS, "body_id": "body", "group_id": "g", "observed_until_s": until,
            "body_states_seen": seen, "callbacks": [{"t": t, "received": r} for t, r in callbacks],
            "member_starts": {TARGET_KEY: list(target_starts), "member-0": [-2.0]},
            "member_ends": {TARGET_KEY: list(target_ends), "member-0": [-1.7]},
            "errback_runs": list(errbacks), "failures": [{"t": 0.1, "task": "lab.member", "task_id": "m3",
                                                          "exception": e} for e in failures],
            "unlock_polls": list(polls), "unlock_retries": max(0, len(polls) - 1),
            "unlock_policy": {"max_retries": None, "interval_s": 1.0},
            "log_lines": {"worker_lost": list(log_lost), "hard_limit": list(log_limit)}, "log_tail": "",
            "chord_state": state, "where": "x",
            "snapshot_end": {"parked_task_ids": ["m3"] if parked else [], "queued_task_ids": []},
            "kill": {"pid": 123, "mono": 1.0}}


def test_rerun_after_child_death_is_pass():
    out = SCENARIO.judge(obs(log_lost=["WorkerLostError: signal 9"]))
    assert out.verdict == Verdict.PASS and "re-ran 2.0s" in out.summary
    assert out.metrics["key_figure"] == "pass 7s" and out.metrics["worker_lost_log_lines"] == 1


def test_unenforced_time_limit_is_pass_and_says_so():
    out = SCENARIO.judge(obs(mode="time-limit", callbacks=((4.2, [0, 1, 2, 3]),), target_starts=(-2.0,),
                             target_ends=(4.0,)))
    assert out.verdict == Verdict.PASS and "not enforced" in out.summary
    assert out.metrics["limit_enforced"] is False


def test_chord_error_seen_by_caller_is_failed_fast():
    out = SCENARIO.judge(obs(callbacks=(), target_starts=(-1.0,), target_ends=(), failure_t=1.2, errbacks=(1.1,),
                             failures=["WorkerLostError('Worker exited prematurely')"], body_state="FAILURE"))
    assert out.verdict == Verdict.FAILED_FAST and out.metrics["key_figure"] == "failed-fast 1s"
    assert "WorkerLostError" in out.summary and out.metrics["worker_lost_failures"] == 1
    assert out.evidence["chord_error"] == CHORD_ERROR


def test_unlock_polling_on_lost_member_is_incomplete_with_poll_count():
    polls = [float(t) for t in range(-1, 20)]
    out = SCENARIO.judge(obs(mode="lost-member", callbacks=(), target_starts=(), target_ends=(), polls=polls,
                             until=20.1, body_state="PENDING"))
    assert out.verdict == Verdict.INCOMPLETE and out.signature == "chord-unlock-polls-forever"
    assert out.metrics["key_figure"] == "incomplete: 21 unlock polls"
    assert out.metrics["unlock_max_retries"] is None and out.metrics["unlock_polls_last_third"] == 6


def test_polls_that_stopped_early_are_not_counted_as_rising():
    out = SCENARIO.judge(obs(mode="lost-member", callbacks=(), target_starts=(), target_ends=(),
                             polls=[0.0, 1.0, 2.0], until=20.0, body_state="PENDING"))
    assert out.verdict == Verdict.INCOMPLETE and out.signature == "chord-waits-silently"


def test_open_join_counter_without_poller_is_incomplete():
    out = SCENARIO.judge(obs(mode="lost-member", callbacks=(), target_starts=(), target_ends=(),
                             counter={"joined": 3, "size": 4}, until=20.0, body_state="PENDING"))
    assert out.verdict == Verdict.INCOMPLETE and out.signature == "chord-join-counter-open"
    assert out.metrics["key_figure"] == "incomplete: join 3/4, no poller"


def test_member_parked_in_broker_is_incomplete():
    out = SCENARIO.judge(obs(callbacks=(), target_starts=(-1.0,), target_ends=(), parked=True, until=20.0,
                             body_state="PENDING"))
    assert out.verdict == Verdict.INCOMPLETE and out.signature == "member-pending"


def test_nothing_waits_and_nothing_fails_is_lost():
    out = SCENARIO.judge(obs(callbacks=(), target_starts=(-1.0,), target_ends=(), until=20.0,
                             counter={"joined": 0, "size": None}, body_state="PENDING"))
    assert out.verdict == Verdict.LOST and out.metrics["key_figure"] == "lost"


def test_duplicates():
    twice = SCENARIO.judge(obs(callbacks=((7.0, [0, 1, 2, 3]), (7.5, [0, 1, 2, 3]))))
    assert twice.verdict == Verdict.DUPLICATE and "2x" in twice.summary
    wrong = SCENARIO.judge(obs(callbacks=((7.0, [0, 1, 2]),)))
    assert wrong.verdict == Verdict.DUPLICATE and "[0, 1, 2]" in wrong.summary
    member = SCENARIO.judge(obs(target_ends=(1.0, 7.5)))
    assert member.verdict == Verdict.DUPLICATE and "completed twice" in member.summary
    both = SCENARIO.judge(obs(failure_t=1.0, errbacks=(0.9,)))
    assert both.verdict == Verdict.DUPLICATE and "chord error was delivered too" in both.summary


def test_chord_error_delivered_twice_is_duplicate_also_failed_fast():
    out = SCENARIO.judge(obs(mode="time-limit", callbacks=(), target_starts=(-2.0,), target_ends=(),
                             failure_t=0.2, errbacks=(0.1, 0.2), failures=["TimeLimitExceeded(2.0)"],
                             log_limit=["Hard time limit (2.0s) exceeded"], body_state="FAILURE"))
    assert out.verdict == Verdict.DUPLICATE and out.signature == "chord-error-twice"
    assert out.also == ["failed-fast"] and out.metrics["errback_runs"] == 2
    assert out.metrics["limit_enforced"] is True and out.metrics["time_limit_failures"] == 1


def test_start_failure_and_unapplied_fault():
    hang = SCENARIO.judge({"ready": False, "exit_code": None})
    assert hang.verdict == Verdict.HANG
    fault = SCENARIO.judge({**obs(), "fault_error": "the target's message was not removed"})
    assert fault.verdict == Verdict.ERROR and fault.signature == "lab-fault-not-applied"


def test_child_death_needs_a_pool_with_children():
    cell = lambda pool, mode: SimpleNamespace(pool=pool, mode=mode)  # noqa: E731
    assert "no pool child" in SCENARIO.not_for(cell("gevent", "child-death"))
    assert SCENARIO.not_for(cell("prefork", "child-death")) is None
    assert SCENARIO.not_for(cell("solo", "lost-member")) is None
    assert SCENARIO.not_for(cell("threads", "time-limit")) is None
