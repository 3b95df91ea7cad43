"""recycle: pool children recycled by Celery, by memory or by task count (fault family `child`).

Contract: the mode is a lab.faults.child.Recycle trigger, armed through the
worker's settings (lab.faults.child.settings, merged over the profile's):
  memory  worker_max_memory_per_child (KiB) with HOGS `lab.hog` tasks that
          allocate and keep child.HOG_MIB MiB each, among a flood of instant
          tasks: each child that ran a hog exceeds the limit and is replaced;
  count   worker_max_tasks_per_child = child.MAX_TASKS under the flood.
Every task has its own ledger key (flood-N, hog-N, fresh-N), so one task
falsely failed (WorkerLostError) or run twice among hundreds is counted.
After the flood, FRESH instant tasks are sent: fresh work must still run.
Observations: per key the executions and failures, per child pid its
start (child_init) and the tasks it ran, the live children at the end,
exit code, orphans, tracebacks after a SIGTERM (warm shutdown).
Checker `judge(obs)`, pure, every deviation a Finding:
  crash       a traceback in the log;
  lost        a key never completed and never failed;
  duplicate   a key completed twice;
  bug         a task failed (WorkerLostError: `task-failed-in-recycle`), no
              recycle happened (`no-recycle`: the trigger did not act), a
              replacement child that came up and never took work while fresh
              work waited (`replacement-child-idle`, with its pid), an unclean
              exit, orphans;
  incomplete  fresh work not done within FRESH_BOUND s (`fresh-work-not-run`);
  hang        no exit within the bound after SIGTERM.
n/a on pools without child processes (nothing to recycle).
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from lab import catalog
from lab.faults import child
from lab.faults.child import Recycle
from lab.journal import select
from lab.scenarios.base import CellContext, Scenario
from lab.observers.exit import exit_observation, judge_start_failure
from lab.scenarios.findings import crash_findings, exit_findings
from lab.verdict import Finding, Outcome, Verdict
from lab.waits import hold

FLOOD = 120
HOGS = 6
FRESH = 12
FLOOD_BOUND = 60.0
FRESH_BOUND = 20.0
IDLE_BEFORE_FRESH_S = 1.0  # a child up this long before the fresh tasks, which ran none of them


class Recycling(Scenario):
    name = "recycle"

    def not_for(self, cell) -> str | None:
        Recycle(cell.mode)
        if cell.pool not in catalog.POOLS_WITH_CHILDREN:
            return f"the {cell.pool} pool has no child processes to recycle"
        return None

    def run(self, ctx: CellContext) -> dict[str, Any]:
        mode = Recycle(ctx.cell.mode)
        env = dict(ctx.worker_env)
        merged = {**json.loads(env.get("LAB_CELERY_SETTINGS") or "{}"), **child.settings(mode)}
        env["LAB_CELERY_SETTINGS"] = json.dumps(merged)
        worker = ctx.worker("worker", env=env).start()
        obs: dict[str, Any] = {"mode": mode.value, "settings": merged, "hog_mib": child.HOG_MIB,
                               "concurrency": ctx.cell.concurrency,
                               "ready": worker.wait_ready(60)}
        if not obs["ready"]:
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        app, keys, ids = ctx.client(), [], {}
        for i in range(FLOOD):
            if mode == Recycle.MEMORY and i % (FLOOD // HOGS) == 0:
                key = f"hog-{len([k for k in keys if k.startswith('hog')])}"
                ids[app.send_task("lab.hog", args=(child.HOG_MIB,), kwargs={"key": key}, queue=ctx.queue).id] = key
            else:
                key = f"flood-{i}"
                ids[app.send_task("lab.churn", kwargs={"key": key}, queue=ctx.queue).id] = key
            keys.append(key)
        t0 = time.monotonic()
        done = lambda ev, want: set(want) <= ({e.get("key") for e in select(ev, "exec_end")}  # noqa: E731
                                              | {ids.get(e.get("task_id")) for e in _failed(ev)})
        ctx.wait_for(lambda ev: done(ev, keys), FLOOD_BOUND, interval=0.2)
        obs["flood_s"] = round(time.monotonic() - t0, 2)
        hold(1.5)  # the last recycle: the replacement child comes up
        fresh = [f"fresh-{i}" for i in range(FRESH)]
        obs["fresh_sent_mono"] = time.monotonic()
        for key in fresh:
            ids[app.send_task("lab.churn", kwargs={"key": key}, queue=ctx.queue).id] = key
        finished = ctx.wait_for(lambda ev: done(ev, fresh), FRESH_BOUND, interval=0.2)
        obs["fresh_done"] = bool(finished)
        obs["fresh_s"] = round(time.monotonic() - obs["fresh_sent_mono"], 2) if finished else None
        obs["children_at_end"] = [c.pid for c in worker.children()]
        worker.send(signal.SIGTERM)
        obs.update(exit_observation(worker, bound=30.0))
        obs.update(self._ledger(ctx.events(), keys + fresh, ids, worker.pid))
        return obs

    @staticmethod
    def _ledger(events: list[dict], keys: list[str], ids: dict[str, str], master: int) -> dict[str, Any]:
        ends: dict[str, int] = {}
        for e in select(events, "exec_end"):
            ends[e.get("key")] = ends.get(e.get("key"), 0) + 1
        by_id = {**ids, **{e.get("task_id"): e.get("key") for e in select(events, "exec_start")}}
        children: dict[int, dict[str, Any]] = {}
        for e in events:
            if e.get("event") == "child_init":
                children[e["pid"]] = {"init_mono": e["mono"], "ran": []}
        for e in select(events, "exec_start"):
            children.setdefault(e["pid"], {"init_mono": None, "ran": []})["ran"].append(
                {"key": e.get("key"), "mono": e["mono"]})
        children.pop(master, None)
        return {"keys": keys, "ends": {k: ends.get(k, 0) for k in keys},
                "failures": [{"key": e.get("key") or by_id.get(e.get("task_id")), "task_id": e.get("task_id"),
                              "exception": (e.get("exception") or "")[:200]} for e in _failed(events)],
                "children": {str(pid): c for pid, c in children.items()}}

    def judge(self, obs: dict[str, Any]) -> Outcome:
        if not obs.get("ready"):
            return judge_start_failure(obs)
        findings: list[Finding] = []

        def find(verdict, code, text, evidence="", crash=False):
            findings.append(Finding(verdict, code, text, {"evidence": evidence} if evidence else {}, crash))

        findings.extend(crash_findings(obs))
        ends, failures = obs.get("ends") or {}, obs.get("failures") or []
        failed = {f["key"] for f in failures}
        lost = sorted(k for k, n in ends.items() if n == 0 and k not in failed)
        dups = sorted(k for k, n in ends.items() if n > 1)
        if lost:
            find(Verdict.LOST, "task-lost", f"{len(lost)} of {len(ends)} tasks never completed nor failed: "
                 f"{', '.join(lost[:10])}")
        if dups:
            find(Verdict.DUPLICATE, "task-ran-twice", f"{len(dups)} tasks completed twice: {', '.join(dups[:10])}")
        if failures:
            find(Verdict.BUG, "task-failed-in-recycle", f"{len(failures)} task(s) failed while children were "
                 f"recycled: {failures[0]['exception']}", repr(failures[:10]))
        children = obs.get("children") or {}
        inits = [c for c in children.values() if c.get("init_mono") is not None]
        concurrency = obs.get("concurrency") or 2
        recycles = max(0, len(inits) - concurrency)
        if recycles == 0:
            find(Verdict.BUG, "no-recycle", f"no child was replaced ({len(inits)} children started for "
                 f"{obs.get('settings')})")
        fresh_t0 = obs.get("fresh_sent_mono") or 0.0
        idle = [int(pid) for pid, c in children.items()
                if int(pid) in (obs.get("children_at_end") or []) and c.get("init_mono") is not None
                and c["init_mono"] < fresh_t0 - IDLE_BEFORE_FRESH_S
                and not [r for r in c["ran"] if r["mono"] >= c["init_mono"]]]
        if idle and (not obs.get("fresh_done") or len([k for k in ends if k.startswith("fresh")]) >= 4 * concurrency):
            find(Verdict.BUG, "replacement-child-idle", f"child(ren) {idle} came up and never took a task while "
                 "fresh work waited")
        if not obs.get("fresh_done"):
            find(Verdict.INCOMPLETE, "fresh-work-not-run", f"fresh tasks after the recycles not all done within "
                 f"{FRESH_BOUND:.0f}s")
        findings.extend(exit_findings(obs, "no exit within 30s of SIGTERM", "warm shutdown ended with {desc}"))
        metrics = {"mode": obs.get("mode"), "tasks": len(ends), "recycles": recycles,
                   "tasks_failed": len(failures), "tasks_lost": len(lost), "tasks_duplicated": len(dups),
                   "flood_s": obs.get("flood_s"), "fresh_s": obs.get("fresh_s"), "exit_code": obs.get("exit_code"),
                   "key_figure": f"{recycles} recycles"}
        evidence = {"children": repr({p: {"ran": len(c["ran"])} for p, c in children.items()}),
                    "log_tail": obs.get("log_tail", "")}
        return Outcome.of(findings, metrics, evidence,
                          passed=f"{len(ends)} tasks once each through {recycles} recycles; fresh work ran in "
                                 f"{obs.get('fresh_s')}s; warm shutdown exit 0")


def _failed(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("event") == "task_failure"]


SCENARIO = Recycling()
