"""The lifecycle-smoke checker is a pure function of observations."""

from __future__ import annotations

from lab.scenarios.lifecycle_smoke import SCENARIO
from lab.verdict import Verdict


def obs(**over):
    base = {"ready": True, "ready_s": 2.0, "callback_s": 1.0, "exit_code": 0, "exit_signal": None,
            "exit_s": 1.5, "exit_desc": "exit 0 after 1.5s", "orphans": [], "log_tail": "",
            "loud_lines": [], "signatures": [], "callbacks": [[0, 1, 2]]}
    base.update(over)
    return base


def test_pass():
    out = SCENARIO.judge(obs())
    assert out.verdict == Verdict.PASS and "exit 0" in out.summary


def test_lost_duplicate_hang_unclean_orphans():
    assert SCENARIO.judge(obs(callbacks=[])).verdict == Verdict.LOST
    assert SCENARIO.judge(obs(callbacks=[[0, 1, 2], [0, 1, 2]])).verdict == Verdict.DUPLICATE
    assert SCENARIO.judge(obs(callbacks=[[0, 0, 2]])).verdict == Verdict.DUPLICATE
    assert SCENARIO.judge(obs(exit_code=None, exit_s=None)).verdict == Verdict.HANG
    unclean = SCENARIO.judge(obs(exit_code=-9, exit_signal="SIGKILL"))
    assert unclean.verdict == Verdict.BUG and unclean.signature == "unclean-exit:SIGKILL"
    orphans = SCENARIO.judge(obs(orphans=[{"pid": 5}]))
    assert orphans.signature == "orphaned-children"


def test_start_failures():
    silent = SCENARIO.judge(obs(ready=False, exit_code=0, callbacks=None))
    assert silent.verdict == Verdict.SILENT_EXIT
    loud = SCENARIO.judge(obs(ready=False, exit_code=1, loud_lines=["[x: CRITICAL/MainProcess] boom"],
                              signatures=[{"name": "shm-read-only", "title": "t", "excerpt": "e",
                                           "severity": "bug"}]))
    assert loud.verdict == Verdict.BUG and loud.signature == "shm-read-only"
    hang = SCENARIO.judge(obs(ready=False, exit_code=None))
    assert hang.verdict == Verdict.HANG


def test_traceback_after_clean_exit_is_a_bug():
    out = SCENARIO.judge(obs(signatures=[{"name": "unknown:KeyError@hub.py:remove", "title": "KeyError traceback",
                                          "excerpt": "KeyError: 5", "severity": "bug"}]))
    assert out.verdict == Verdict.BUG and out.signature.startswith("unknown:KeyError")


def test_a_blind_journal_is_a_lab_error_not_a_finding():
    out = SCENARIO.judge(obs(ready=False, exit_code=None, log_says_ready=True, journal_says_ready=False))
    assert out.verdict == Verdict.ERROR
