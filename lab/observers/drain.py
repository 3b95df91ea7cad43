"""A drain worker: what a worker's shutdown left in the broker, run by a fresh worker.

Contract: `drain(ctx, keys, bound_s, name="drain", wrapper=(), task_ids=None)`
starts a worker named `name` on the cell's queue (the cell's configuration
and `wrapper`, no fault; without mingle: lab.worker_fidelity.OBSERVER_FLAGS,
its one deviation beyond every lab worker's), waits up to 60 s for it to be
ready, then until every task key in `keys` has an `exec_end` in the journal
or `bound_s` seconds passed, then (up to SETTLE_S) until every task the
drain started has ended, so a duplicate run shows and no task is cut, and
gives a duplicate 0.5 s more. Then it stops the drain:
  - every key ended: SIGKILL to its process group (nothing of the cell is
    left for it; no judge reads how it stops, issue 15);
  - the bound ran out first: a warm stop (SIGTERM, up to 20 s), as a
    production stop does, so Celery hands back what it holds. A SIGKILL there
    cut messages out of the broker in mid-delivery (kombu's Redis BRPOP) and
    showed the drain's own kill as messages lost (publish-through-shutdown
    `warm` on threads, runs 20261204-182144 and -183506). A broker snapshot
    afterwards names the keys still in the broker (`task_ids`: task id ->
    key, for the snapshot; Redis lists ids, RabbitMQ gives a count).
Returns {"drain_ready", "drain_mono" (when it was started: journal events
from then on are the drain's), "drain_bound_s", "drain_missing" (keys still
not ended), "drain_stop" ("killed" | "warm" | "not ready"),
"drain_left_in_broker" (keys of `drain_missing` whose message the snapshot
shows still in the broker: not lost, not drained within the bound)}.
Judges count a key of drain_left_in_broker as not drained, never as lost.
"""

from __future__ import annotations

import signal
from typing import Any

from lab.journal import select
from lab.observers.broker_snapshot import snapshot
from lab.waits import hold

SETTLE_S = 5.0   # for tasks the drain started to end once every key has (a duplicate run: 4 s tasks at most)
STOP_S = 20.0    # a warm stop's bound, as the shutdown scenario's drain always had


def ended_keys(events: list[dict]) -> set[str]:
    return {e.get("key") for e in select(events, "exec_end")}


def _running_since(events: list[dict], mono: float) -> set[str]:
    """Task ids started at or after `mono` and not ended."""
    started = {e.get("task_id") for e in select(events, "exec_start") if e.get("mono", 0) >= mono}
    ended = {e.get("task_id") for e in select(events, "exec_end") if e.get("mono", 0) >= mono}
    return started - ended


def left_in_broker(snap: dict[str, Any], missing: list[str], task_ids: dict[str, str]) -> list[str]:
    """Keys of `missing` whose message `snap` (lab.observers.broker_snapshot) shows in the broker:
    by id where the transport lists them (Redis queue and unacked hash, SQL hidden rows); on a
    transport that gives only a ready count (RabbitMQ), all of them when the count covers them."""
    if not missing or "error" in snap:
        return []
    listed = set(snap.get("queued_task_ids") or []) | set(snap.get("parked_task_ids") or [])
    if "queued_task_ids" in snap or "rows_visible" in snap:
        return sorted(key for tid, key in task_ids.items() if key in missing and tid in listed)
    ready = snap.get("ready")
    return sorted(missing) if isinstance(ready, int) and ready >= len(missing) else []


def drain(ctx, keys: set[str], bound_s: float, name: str = "drain",
          wrapper: list[str] | tuple[str, ...] = (), task_ids: dict[str, str] | None = None) -> dict[str, Any]:
    worker = ctx.worker(name, env=dict(ctx.worker_env), wrapper=list(wrapper), observer=True).start()
    out: dict[str, Any] = {"drain_mono": worker.started_mono, "drain_bound_s": bound_s,
                           "drain_ready": worker.wait_ready(60), "drain_stop": "not ready",
                           "drain_left_in_broker": []}
    if out["drain_ready"]:
        ctx.wait_for(lambda ev: keys <= ended_keys(ev), bound_s)
        ctx.wait_for(lambda ev: not _running_since(ev, out["drain_mono"]), SETTLE_S)
        hold(0.5)
        if keys <= ended_keys(ctx.events()):
            out["drain_stop"] = "killed"
        else:
            out["drain_stop"] = "warm"
            worker.send(signal.SIGTERM)
            worker.wait_exit(STOP_S)
    worker.teardown()
    missing = sorted(keys - ended_keys(ctx.events()))
    out["drain_missing"] = missing[:100]
    if missing and out["drain_stop"] == "warm" and task_ids:
        url = ctx.worker_env.get("LAB_BROKER_URL", "")
        ids = [tid for tid, key in task_ids.items() if key in missing]
        out["drain_left_in_broker"] = left_in_broker(snapshot(url, ctx.queue, ids), missing, task_ids)
    return out
