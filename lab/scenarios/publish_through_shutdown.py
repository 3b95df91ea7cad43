"""publish-through-shutdown: a client keeps publishing while the worker shuts down.

Contract: the mode is how the worker goes away while a publisher thread
sends RATE_PER_S short tasks a second (each its own key, pub-N), from
PRE_S seconds before the fault until POST_S seconds after the worker exited:
  warm      SIGTERM;
  cold      SIGQUIT;
  soft      SIGQUIT with worker_soft_shutdown_timeout = SOFT_S (n/a where the
            installed Celery lacks the setting);
  eviction  lab.faults.eviction.apply_eviction (SIGTERM, 4 s grace, SIGKILL
            to the group).
Before the publisher starts, one task of INFLIGHT_S (key pub-inflight) is
sent and watched until it runs, so a task is always executing when the
fault lands (PRE_S later): with short tasks alone, whether one was mid-run
at the signal was an accident of timing (run 20261202-050841 saw the cold
shutdown cut none where two runs before it cut two). INFLIGHT_S ends within
every mode's grace (warm waits; soft's SOFT_S and eviction's 4 s outlast its
remaining 2 s), so only a cold shutdown or a kill cuts it. If the worker has not
begun it within INFLIGHT_BOUND_S the run goes on and the record says so
(metric `inflight_started`, and the summary). On `solo` the task holds the
only execution slot, so the short tasks wait behind it until the fault.
Afterwards a broker snapshot (lab.observers.broker_snapshot), then a drain
worker (lab.observers.drain) runs what was left, then a last snapshot shows
what is still parked (Redis' unacked set). Every published message is then
accounted for (`account(obs)`): consumed once by the worker, left in the
broker and run by the drain worker, parked (unacked, returns after the
visibility timeout), publish failed, or lost; and run twice.
Checker `judge(obs)`, pure: lost messages are a `lost` finding, split into
`running-task-lost` (started on the worker, never ended: acknowledged early
and cut by a cold shutdown or the kill, as early acknowledgement implies)
and `message-lost` (never started anywhere); `duplicate` for a message run
twice; `incomplete` for messages still parked at the end; `bug` for a
publish that failed while the broker was up, an unclean warm exit, orphans,
tracebacks (crash); `hang` if the worker never exited.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from lab.faults.eviction import EvictionPlan, apply_eviction
from lab.journal import select
from lab.observers.drain import drain
from lab.scenarios.base import CellContext, Scenario, drop_result_subscriptions
from lab.observers.broker_snapshot import snapshot
from lab.observers.exit import exit_observation, judge_start_failure
from lab.scenarios.shutdown_semantics import ledger
from lab.verdict import Finding, Outcome, Verdict
from lab.waits import hold

MODES = ("warm", "cold", "soft", "eviction")
RATE_PER_S = 25.0
TASK_S = 0.1
PRE_S = 2.0
POST_S = 1.5
EXIT_BOUND = 30.0
SOFT_S = 3.0
# The drain runs ~125 messages on 2 threads in ~17 s on an idle host (threads `warm`, 2026-12-04); at 16
# lanes 20 s ran out mid-backlog (runs 20261204-182144/-183506). The wait ends when every key has ended.
DRAIN_S = 30.0
PLAN = EvictionPlan(grace_s=4.0, production_grace_s=60.0)
INFLIGHT_S = PRE_S + 2.0  # running at the fault, 2 s left: inside warm, soft (SOFT_S) and eviction grace
INFLIGHT_BOUND_S = 10.0   # the worker must start it within this


class Publisher(threading.Thread):
    """Sends lab.sleep(TASK_S, key=pub-N) at RATE_PER_S until stopped; records every send."""

    def __init__(self, app, queue: str) -> None:
        super().__init__(name="lab-publisher", daemon=True)
        self.app, self.queue = app, queue
        self.sent: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def send(self, key: str, seconds: float) -> bool:
        """Publish lab.sleep(seconds, key=key) and record it (a failed publish is recorded with
        its error: an observation). True when the broker took it."""
        mono = time.monotonic()
        try:
            task_id = self.app.send_task("lab.sleep", args=(seconds,), kwargs={"key": key}, queue=self.queue).id
        except Exception as exc:
            self.sent.append({"key": key, "id": None, "mono": mono, "error": repr(exc)[:200]})
            return False
        self.sent.append({"key": key, "id": task_id, "mono": mono})
        return True

    def run(self) -> None:
        n, t0 = 0, time.monotonic()
        try:
            while not self.halt.is_set():
                self.send(f"pub-{n}", TASK_S)
                n += 1
                self.halt.wait(max(0.0, t0 + n / RATE_PER_S - time.monotonic()))
        finally:  # this thread's own backend (Celery keeps one per thread): the cell's teardown cannot
            drop_result_subscriptions(self.app)  # reach it, and its results must not reconnect later


class PublishThroughShutdown(Scenario):
    name = "publish-through-shutdown"

    def applies(self, ctx: CellContext) -> str | None:
        if ctx.cell.mode not in MODES:
            raise ValueError(f"mode {ctx.cell.mode!r}; allowed: {', '.join(MODES)}")
        if ctx.cell.mode == "soft":
            from celery.app import defaults
            if "soft_shutdown_timeout" not in defaults.NAMESPACES["worker"]:
                return "this Celery has no worker_soft_shutdown_timeout setting (celery.app.defaults)"
        return None

    def run(self, ctx: CellContext) -> dict[str, Any]:
        mode = ctx.cell.mode
        env = dict(ctx.worker_env)
        if mode == "soft":
            env["LAB_SOFT_SHUTDOWN_TIMEOUT"] = str(SOFT_S)
        worker = ctx.worker("worker", env=env).start()
        obs: dict[str, Any] = {"mode": mode, "settings": ctx.profile.get("settings") or {},
                               "ready": worker.wait_ready(60)}
        if not obs["ready"]:
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        publisher = Publisher(ctx.client(), ctx.queue)
        obs["inflight"] = publisher.send("pub-inflight", INFLIGHT_S) and bool(ctx.wait_for(
            lambda events: any(e.get("key") == "pub-inflight" for e in select(events, "exec_start")),
            INFLIGHT_BOUND_S, 0.05))
        publisher.start()
        hold(PRE_S)
        fault_mono = time.monotonic()
        if mode == "eviction":
            obs["eviction"] = {k: v for k, v in apply_eviction(worker, PLAN).items() if k != "plan"}
        else:
            worker.send(signal.SIGTERM if mode == "warm" else signal.SIGQUIT)
        obs.update(exit_observation(worker, bound=EXIT_BOUND))
        exit_mono = next((f["mono"] for f in worker.faults if f["kind"] == "exit"), None)
        hold(POST_S)
        publisher.halt.set()
        publisher.join(10)
        if obs.get("orphans"):
            worker.teardown()  # the drain worker must not compete with survivors (listed above)
        url = ctx.worker_env["LAB_BROKER_URL"]
        ids = [s["id"] for s in publisher.sent if s["id"]]
        obs["snapshot_before_drain"] = snapshot(url, ctx.queue, ids)
        sent = {s["id"]: s["key"] for s in publisher.sent if s["id"]}
        info = drain(ctx, set(sent.values()), DRAIN_S, task_ids=sent) if exit_mono is not None else {}
        obs.update(info)
        obs["snapshot_end"] = snapshot(url, ctx.queue, ids)
        obs.update({"fault_mono": fault_mono, "exit_mono": exit_mono, "published": publisher.sent,
                    "events": ledger(ctx.events(), sent, [fault_mono], info.get("drain_mono"),
                                     parked_ids=obs["snapshot_end"].get("parked_task_ids"))})
        return obs

    def judge(self, obs: dict[str, Any]) -> Outcome:
        if not obs.get("ready"):
            return judge_start_failure(obs)
        acc = account(obs)
        findings: list[Finding] = []

        def find(verdict, code, text, evidence="", crash=False):
            findings.append(Finding(verdict, code, text, {"evidence": evidence} if evidence else {}, crash))

        for match in [m for m in obs.get("signatures") or [] if m["severity"] == "bug"][:3]:
            find(Verdict.BUG, match["name"], f"traceback: {match['title']}", match["excerpt"][:1500], True)
        if acc["running_lost"]:
            find(Verdict.LOST, "running-task-lost", f"{len(acc['running_lost'])} message(s) started on the worker "
                 f"and never ended anywhere (acknowledged before they ran, cut by the {obs['mode']} shutdown): "
                 f"{', '.join(acc['running_lost'][:8])}")
        if acc["lost"]:
            find(Verdict.LOST, "message-lost", f"{len(acc['lost'])} published message(s) never ran anywhere and "
                 f"are not in the broker: {', '.join(acc['lost'][:8])}")
        if acc["twice"]:
            find(Verdict.DUPLICATE, "message-ran-twice", f"{len(acc['twice'])} ran twice: {', '.join(acc['twice'][:8])}")
        if acc["parked"]:
            find(Verdict.INCOMPLETE, "parked-unacked", f"{len(acc['parked'])} message(s) still parked unacked at the "
                 "end (they return after the visibility timeout: a prediction, not observed)")
        if acc["publish_failed"]:
            find(Verdict.BUG, "publish-failed", f"{len(acc['publish_failed'])} publish(es) failed while the broker "
                 f"was up: {acc['publish_errors'][0]}")
        if obs.get("exit_code") is None:
            find(Verdict.HANG, "shutdown-hang", f"no exit within {EXIT_BOUND:.0f}s")
        elif obs["mode"] == "warm" and obs["exit_code"] != 0:
            find(Verdict.BUG, f"unclean-exit:{obs.get('exit_signal') or obs['exit_code']}",
                 f"warm shutdown ended with {obs.get('exit_desc')}")
        if obs.get("orphans"):
            find(Verdict.BUG, "orphaned-children", f"{len(obs['orphans'])} process(es) outlived the master",
                 repr(obs["orphans"]))
        counts = {k: len(v) for k, v in acc.items() if isinstance(v, list) and k != "publish_errors"}
        metrics = {"mode": obs["mode"], **counts, "exit_code": obs.get("exit_code"),
                   "inflight_started": obs.get("inflight"),
                   "key_figure": f"{counts['published']} sent, {counts['lost'] + counts['running_lost']} lost"}
        evidence = {"accounting": repr(counts), "snapshot_before_drain": repr(obs.get("snapshot_before_drain")),
                    "snapshot_end": repr(obs.get("snapshot_end")), "log_tail": obs.get("log_tail", "")}
        return Outcome.of(findings, metrics, evidence, passed=(
            f"{counts['published']} published through the {obs['mode']} shutdown: {counts['by_worker']} consumed "
            f"once by the worker, {counts['left_in_broker']} left in the broker and run by the drain worker, "
            "none lost or run twice"
            + (f"; {counts['not_drained']} still in the broker when the drain's {obs.get('drain_bound_s', 0):.0f}s "
               "bound ran out (not drained, not lost)" if counts["not_drained"] else "")
            + ("" if obs.get("inflight", True) else
                                        "; pub-inflight had not started by the fault: no task was "
                                        "surely in flight")))


def account(obs: dict[str, Any]) -> dict[str, Any]:
    """Every published message in exactly one bucket (plus `twice` across buckets), by key."""
    keys = (obs.get("events") or {}).get("keys", {})
    out: dict[str, Any] = {n: [] for n in ("published", "by_worker", "left_in_broker", "parked", "running_lost",
                                           "lost", "publish_failed", "twice", "after_exit", "not_drained")}
    out["publish_errors"] = []
    exit_mono = obs.get("exit_mono")
    left = set(obs.get("drain_left_in_broker") or [])  # still in the broker when the drain's bound ran out
    for item in obs.get("published") or []:
        key = item["key"]
        out["published"].append(key)
        if item.get("error"):
            out["publish_failed"].append(key)
            out["publish_errors"].append(item["error"])
            continue
        if exit_mono is not None and item["mono"] > exit_mono:
            out["after_exit"].append(key)
        row = keys.get(key) or {}
        w1, dr = len(row.get("w1_ends") or []), len(row.get("drain_ends") or [])
        if w1 + dr > 1:
            out["twice"].append(key)
        if w1:
            out["by_worker"].append(key)
        elif dr:
            out["left_in_broker"].append(key)
        elif row.get("parked"):
            out["parked"].append(key)
        elif not obs.get("drain_ready") or key in left:  # no drain ran, or its bound ran out: unknown
            out["not_drained"].append(key)
        elif row.get("w1_starts") or row.get("drain_starts"):
            out["running_lost"].append(key)
        else:
            out["lost"].append(key)
    return out


SCENARIO = PublishThroughShutdown()
