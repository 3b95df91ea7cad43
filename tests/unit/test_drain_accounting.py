"""A drain worker whose bound ran out: keys still in the broker are not drained, never lost
(lab.observers.drain.left_in_broker; the judges of shutdown and publish-through-shutdown)."""

from __future__ import annotations

from lab.observers.drain import left_in_broker
from lab.scenarios.publish_through_shutdown import account
from lab.scenarios.shutdown_semantics import classify_tasks

IDS = {"t1": "a", "t2": "b", "t3": "c"}


def test_redis_lists_ids_queued_or_parked():
    snap = {"queue_len": 1, "queued_task_ids": ["t1"], "parked_task_ids": ["t2"]}
    assert left_in_broker(snap, ["a", "b", "c"], IDS) == ["a", "b"]


def test_a_ready_count_covers_all_or_none():
    assert left_in_broker({"ready": 3}, ["a", "b"], IDS) == ["a", "b"]
    assert left_in_broker({"ready": 1}, ["a", "b"], IDS) == []
    assert left_in_broker({"error": "down"}, ["a"], IDS) == []


def _row(**kw):
    row = {"received": None, "w1_starts": [], "w1_ends": [], "drain_starts": [], "drain_ends": [],
           "redelivered": False, "failures": []}
    row.update(kw)
    return row


def test_shutdown_counts_a_key_left_after_the_bound_as_not_drained():
    led = {"keys": {"a": _row(), "b": _row()}, "signal_monos": [10.0], "drain_mono": 20.0,
           "left_in_broker": ["a"]}
    tasks = classify_tasks(led)
    assert tasks["not_drained"] == ["a"] and tasks["lost"] == ["b"]


def test_publish_through_counts_a_key_left_after_the_bound_as_not_drained():
    obs = {"drain_ready": True, "drain_left_in_broker": ["a"], "exit_mono": 5.0,
           "published": [{"key": "a", "mono": 6.0}, {"key": "b", "mono": 6.1}],
           "events": {"keys": {"a": _row(), "b": _row()}}}
    acc = account(obs)
    assert acc["not_drained"] == ["a"] and acc["lost"] == ["b"]
