"""The eviction checker on synthetic observations (times are s after SIGTERM)."""

from __future__ import annotations

from lab.scenarios.eviction import LONG_KEY, SCENARIO
from lab.verdict import Verdict

LONG = "long-id"


def obs(callbacks=((5.0, [0, 1, 2, 3]),), long_starts=(-1.0,), long_ends=(2.0,), parked=False,
        mode="verdict", ready_after=2.0):
    window = {"parked_task_ids": [LONG] if parked else [], "unacked": 1 if parked else 0}
    return {"ready": True, "mode": mode, "vt_s": 20.0, "long_s": 10.0,
            "plan": {"grace_s": 4.0, "production_grace_s": 60.0},
            "replacement_ready_after_term_s": ready_after, "exited_in_grace": False,
            "old_exit": "killed by SIGKILL", "observed_until_s": 14.0, "where": "x",
            "snapshot_after_kill": window, "snapshot_at_window": window, "long_id": LONG,
            "member_starts": {LONG_KEY: list(long_starts)},
            "member_ends": {LONG_KEY: list(long_ends), "member-0": [-3.0]},
            "callbacks": [{"t": t, "received": r} for t, r in callbacks]}


def test_finalized_in_grace_is_pass():
    out = SCENARIO.judge(obs(callbacks=((1.0, [0, 1, 2, 3]),), long_ends=(0.9,)))
    assert out.verdict == Verdict.PASS and "within the grace" in out.summary


def test_prompt_rerun_is_pass():
    out = SCENARIO.judge(obs(callbacks=((15.0, [0, 1, 2, 3]),), long_starts=(-1.0, 3.0), long_ends=(14.0,)))
    assert out.verdict == Verdict.PASS and "re-ran 3.0s" in out.summary


def test_parked_in_redis_unacked_is_incomplete_with_a_labelled_prediction():
    out = SCENARIO.judge(obs(callbacks=(), long_ends=(), parked=True))
    assert out.verdict == Verdict.INCOMPLETE and "prediction, not observed" in out.summary
    assert out.signature == "visibility-timeout-parked"
    assert out.metrics["observed_end"] == "parked"


def test_measured_stall_reports_seconds_and_vt_ratio():
    out = SCENARIO.judge(obs(callbacks=((110.0, [0, 1, 2, 3]),), long_starts=(-1.0, 100.0),
                             long_ends=(109.0,), mode="measure-stall"))
    assert out.verdict == Verdict.STALL
    assert out.metrics["stall_vt_ratio"] == 5.5 and "5.5x" in out.metrics["key_figure"]


def test_nothing_anywhere_is_lost():
    out = SCENARIO.judge(obs(callbacks=(), long_ends=()))
    assert out.verdict == Verdict.LOST


def test_duplicates_and_wrong_input():
    twice = SCENARIO.judge(obs(callbacks=((5.0, [0, 1, 2, 3]), (6.0, [0, 1, 2, 3]))))
    assert twice.verdict == Verdict.DUPLICATE
    wrong = SCENARIO.judge(obs(callbacks=((5.0, [0, 1, 2, 2]),)))
    assert wrong.verdict == Verdict.DUPLICATE and "[0, 1, 2, 2]" in wrong.summary
    late = SCENARIO.judge(obs(callbacks=((90.0, [0, 1, 2, 3]),), long_ends=(2.0, 89.0)))
    assert late.verdict == Verdict.DUPLICATE and late.also == ["stall"]
