"""The issue-11 judges on observations recorded from real workers on a real Redis (5.6.2,
tests/fixtures/issue11/*.json, one per cell: scenario--pool--profile--mode), then edited to show
each finding. Judges are pure: no worker, no broker."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

pytest.importorskip("celery", reason="the scenario modules import lab.faults (kombu lazily)")

from lab.scenarios import get  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "issue11"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def judge(scenario: str, obs: dict):
    return get(scenario).judge(obs)


# -- control -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["prefork--defaults--shutdown", "gevent--defaults--shutdown",
                                  "prefork--defaults--revoke-terminate"])
def test_remote_control_recorded_passes(name):
    outcome = judge("remote-control", recorded(f"remote-control--{name}"))
    assert outcome.verdict.value == "pass", outcome.summary


def test_control_shutdown_that_cuts_a_running_task_is_not_warm():
    obs = recorded("remote-control--prefork--defaults--shutdown")
    obs["events"]["keys"]["run-0"]["w1_ends"] = []
    outcome = judge("remote-control", obs)
    assert outcome.signature == "control-shutdown-not-warm" and outcome.verdict.value == "bug"


def test_control_shutdown_with_a_non_zero_exit_is_a_finding():
    obs = recorded("remote-control--prefork--defaults--shutdown")
    obs["exit_code"], obs["exit_desc"] = 1, "exit 1"
    assert "bug:unclean-exit:1" in judge("remote-control", obs).finding_keys()


def test_revoke_terminate_refused_by_the_pool_is_failed_fast_and_the_traceback_heads():
    outcome = judge("remote-control", recorded("remote-control--threads--defaults--revoke-terminate"))
    keys = outcome.finding_keys()
    assert "failed-fast:revoke-terminate-refused" in keys
    assert outcome.findings[0].crash and outcome.signature.startswith("unknown:NotImplementedError")


def test_revoke_terminate_ignored_and_no_fresh_work():
    obs = recorded("remote-control--prefork--defaults--revoke-terminate")
    obs["events"]["keys"]["target"]["w1_ends"] = [1.0]
    obs["fresh_done"] = False
    keys = judge("remote-control", obs).finding_keys()
    assert {"bug:revoke-terminate-ignored", "incomplete:no-work-after-revoke"} <= keys


def test_revoked_queued_task_running_on_the_same_worker_and_a_lost_one():
    obs = recorded("remote-control--prefork--defaults--revoke-queued-warm")
    revoked = obs["revoked_key"]
    obs["events"]["keys"][revoked]["w1_starts"] = [1.0]
    other = next(k for k in obs["events"]["keys"] if k.startswith("pre-") and k != revoked)
    obs["events"]["keys"][other]["w1_ends"] = obs["events"]["keys"][other]["drain_ends"] = []
    keys = judge("remote-control", obs).finding_keys()
    assert {"bug:revoked-task-ran", "lost:task-lost"} <= keys


def test_revoke_during_a_warm_shutdown_goes_unanswered():
    """Recorded on 5.6.2 (celery/celery#8417): SIGTERM, then 0.5 s later a revoke of a prefetched task;
    the worker, still finishing its running tasks, never answered, and the drain worker ran the task."""
    outcome = judge("remote-control", recorded("remote-control--prefork--defaults--revoke-queued-warm"))
    assert outcome.signature == "revoke-unanswered-in-warm-shutdown" and outcome.verdict.value == "bug"
    assert outcome.metrics["revoked_ran_on_drain"] is True and outcome.metrics["exit_code"] == 0


def test_revoked_task_run_by_the_drain_worker_is_noted_not_a_finding():
    obs = recorded("remote-control--prefork--defaults--revoke-queued-warm")
    obs["call"]["reply"] = [{"w@lab": {"ok": "tasks flagged as revoked"}}]
    outcome = judge("remote-control", obs)
    assert outcome.verdict.value == "pass", outcome.summary
    assert outcome.metrics["revoked_ran_on_drain"] is True and "--statedb" in outcome.summary


def test_pool_resize_that_changes_nothing_is_a_finding():
    obs = recorded("remote-control--prefork--defaults--pool-grow")
    outcome = judge("remote-control", obs)
    assert outcome.signature == "pool-size-unchanged"  # recorded: 2 children before and after
    obs["children_after"] = obs["children_after"] + [99999]
    assert judge("remote-control", obs).verdict.value == "pass"


# -- eviction: master-kill ---------------------------------------------------------------------
def test_master_kill_children_left_running_are_listed():
    obs = recorded("eviction--prefork--defaults--master-kill")
    assert "bug:children-outlived-master" not in judge("eviction", obs).finding_keys()
    obs["left_running"] = [{"pid": 4242, "ppid": 1, "status": "sleeping",
                            "cmdline": "python -m celery -A lab.app.celery_app worker -P prefork"}]
    outcome = judge("eviction", obs)
    finding = next(f for f in outcome.findings if f.signature == "children-outlived-master")
    assert "pid 4242" in finding.evidence["left_running"] and "celery" in finding.evidence["left_running"]
    assert "lost:member-lost" in outcome.finding_keys()  # the chord judgement is kept


# -- child: recycling -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["memory", "count"])
def test_recycle_recorded_passes_and_counts_recycles(mode):
    outcome = judge("recycle", recorded(f"recycle--prefork--defaults--{mode}"))
    assert outcome.verdict.value == "pass", outcome.summary
    assert outcome.metrics["recycles"] >= 5 and outcome.metrics["tasks"] == 132


def test_recycle_one_false_failure_and_one_duplicate_among_hundreds_are_counted():
    obs = recorded("recycle--prefork--defaults--count")
    obs["ends"]["flood-7"] = 2
    obs["ends"]["flood-8"] = 0
    obs["failures"] = [{"key": "flood-8", "task_id": "x", "exception": "WorkerLostError('Worker exited')"}]
    outcome = judge("recycle", obs)
    assert {"duplicate:task-ran-twice", "bug:task-failed-in-recycle"} <= outcome.finding_keys()
    assert "lost:task-lost" not in outcome.finding_keys()  # failed is not lost
    assert outcome.metrics["tasks_failed"] == 1 and outcome.metrics["tasks_duplicated"] == 1


def test_replacement_child_that_never_takes_work():
    obs = copy.deepcopy(recorded("recycle--prefork--defaults--memory"))
    pid = obs["children_at_end"][0]
    obs["children"][str(pid)]["ran"] = []
    obs["children"][str(pid)]["init_mono"] = obs["fresh_sent_mono"] - 5
    obs["fresh_done"] = False
    keys = judge("recycle", obs).finding_keys()
    assert {"bug:replacement-child-idle", "incomplete:fresh-work-not-run"} <= keys


def test_recycle_that_never_recycled():
    obs = recorded("recycle--prefork--defaults--count")
    obs["children"] = {k: v for k, v in list(obs["children"].items())[:2]}
    assert "bug:no-recycle" in judge("recycle", obs).finding_keys()


# -- publishing through the shutdown window -------------------------------------------------------
def test_publish_warm_every_message_accounted_for():
    outcome = judge("publish-through-shutdown", recorded("publish-through-shutdown--prefork--defaults--warm"))
    m = outcome.metrics
    assert outcome.verdict.value == "pass", outcome.summary
    assert m["published"] == m["by_worker"] + m["left_in_broker"] and m["after_exit"] > 0


def test_publish_cold_running_task_lost_under_early_ack():
    outcome = judge("publish-through-shutdown", recorded("publish-through-shutdown--prefork--defaults--cold"))
    assert outcome.verdict.value == "lost" and outcome.signature == "running-task-lost"
    assert outcome.metrics["running_lost"] == 1


def test_publish_message_gone_parked_or_twice():
    obs = recorded("publish-through-shutdown--prefork--defaults--warm")
    keys = obs["events"]["keys"]
    drained = [k for k, r in keys.items() if r["drain_ends"]]
    keys[drained[0]]["drain_ends"] = keys[drained[0]]["drain_starts"] = []
    keys[drained[1]]["drain_ends"], keys[drained[1]]["parked"] = [], True
    keys[drained[2]]["w1_ends"] = [1.0]
    found = judge("publish-through-shutdown", obs).finding_keys()
    assert {"lost:message-lost", "incomplete:parked-unacked", "duplicate:message-ran-twice"} <= found


# -- resources: start-up limits ----------------------------------------------------------------
def _start(ready_s, daemonise_s=None, code=None, loud=(), alive=False):
    return {"ready_s": ready_s, "daemonise_s": daemonise_s, "nofile_seen": 64,
            "exit": {"exit_code": code, "exit_signal": None, "exit_desc": f"exit {code}", "log_tail": "",
                     "loud_lines": list(loud), "signatures": [], "daemon_alive": alive}}


def limits_obs(limited, detach=False, base=None):
    return {"mode": "nofile-high+detach" if detach else "nofile-high", "detach": detach, "limit": "nofile-high",
            "nofile": 1048576, "baseline_nofile": 1024, "ready": True,
            "baseline": base or _start(2.0, 1.0 if detach else None), "limited": limited}


def test_start_limits_ratios_and_a_slow_daemonisation():
    outcome = judge("start-limits", limits_obs(_start(2.4, 9.0), detach=True))
    assert outcome.metrics["start_ratio"] == 1.2 and outcome.metrics["daemonise_ratio"] == 9.0
    assert outcome.signature == "slow-daemonise:nofile-high" and outcome.verdict.value == "stall"
    assert judge("start-limits", limits_obs(_start(2.4))).verdict.value == "pass"


@pytest.mark.parametrize("limited,verdict", [
    (_start(None, code=1, loud=["OSError: [Errno 24] Too many open files"]), "failed-fast"),
    (_start(None, daemonise_s=0.5, code=0), "silent-exit"),
    (_start(None, code=None, alive=True), "hang")])
def test_start_limits_a_start_that_never_became_ready(limited, verdict):
    assert judge("start-limits", limits_obs(limited)).verdict.value == verdict
