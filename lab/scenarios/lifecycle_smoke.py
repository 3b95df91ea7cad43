"""lifecycle-smoke: start, ready, a chord of three, SIGTERM, warm shutdown.

Contract: proves the pipeline on a pool x broker. Workload: a chord of three
short members and a callback that journals its input. Fault: one SIGTERM to
the master once the callback fired (or its bound passed). Checker, from the
journal, the exit status, the log and the process table:
  pass        ready, callback once with [0, 1, 2], exit 0 within the bound,
              no process left behind, no traceback;
  silent-exit exited before ready with exit 0 or nothing at WARNING+;
  bug         exited before ready loudly, unclean exit, traceback, orphans;
  lost        the callback never fired; duplicate: it fired twice / wrong input;
  hang        never ready nor exited, or no exit within the shutdown bound.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from lab.journal import select
from lab.scenarios.base import CellContext, Scenario
from lab.observers.exit import exit_observation, judge_start_failure
from lab.verdict import Outcome, Verdict
from lab.waits import hold

MEMBERS = 3
READY_TIMEOUT = 60.0
CALLBACK_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0


class LifecycleSmoke(Scenario):
    name = "lifecycle-smoke"

    def run(self, ctx: CellContext) -> dict[str, Any]:
        from celery import chord

        worker = ctx.worker("worker").start()
        ready = worker.wait_ready(READY_TIMEOUT)
        obs: dict[str, Any] = {"ready": ready, "ready_s": round(time.monotonic() - worker.started_mono, 3)}
        if not ready:
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        sent = time.monotonic()
        app = ctx.client()
        header = [app.signature("lab.member", args=(i, 0.2), queue=ctx.queue) for i in range(MEMBERS)]
        body = app.signature("lab.collect", queue=ctx.queue)
        chord(header, body, app=app).apply_async(queue=ctx.queue)
        first = ctx.wait_for(lambda ev: select(ev, "callback"), CALLBACK_TIMEOUT)
        obs["callback_s"] = round(time.monotonic() - sent, 3) if first else None
        hold(0.5)  # a second callback, if any, has time to show
        worker.send(signal.SIGTERM)
        obs.update(exit_observation(worker, bound=SHUTDOWN_TIMEOUT))
        events = ctx.events()
        obs["callbacks"] = [e.get("received") for e in select(events, "callback")]
        obs["member_runs"] = len(select(events, "exec_end"))
        obs["warm_line"] = "Warm shutdown" in worker.log_text()
        return obs

    def judge(self, obs: dict[str, Any]) -> Outcome:
        if not obs["ready"]:
            return judge_start_failure(obs)
        metrics = {"ready_s": obs["ready_s"], "callback_s": obs.get("callback_s"),
                   "exit_s": obs.get("exit_s"), "exit_code": obs.get("exit_code")}
        evidence = {"log_tail": obs.get("log_tail", ""), "callbacks": repr(obs.get("callbacks"))}
        matches = [m for m in obs.get("signatures", []) if m["severity"] == "bug"]
        if matches:
            evidence["traceback"] = matches[0]["excerpt"]
            return Outcome(Verdict.BUG, f"{matches[0]['title']} ({obs.get('exit_desc')})",
                           matches[0]["name"], metrics, evidence)
        if obs.get("exit_code") is None:
            return Outcome(Verdict.HANG, f"no exit within {SHUTDOWN_TIMEOUT:.0f}s of SIGTERM",
                           "shutdown-hang", metrics, evidence)
        callbacks = obs.get("callbacks") or []
        if not callbacks:
            return Outcome(Verdict.LOST, f"chord callback never fired within {CALLBACK_TIMEOUT:.0f}s",
                           None, metrics, evidence)
        if len(callbacks) > 1 or sorted(callbacks[0]) != list(range(MEMBERS)):
            return Outcome(Verdict.DUPLICATE, f"callback fired {len(callbacks)}x with {callbacks}",
                           None, metrics, evidence)
        if obs.get("exit_code") != 0:
            return Outcome(Verdict.BUG, f"warm shutdown ended with {obs.get('exit_desc')}",
                           f"unclean-exit:{obs.get('exit_signal') or obs.get('exit_code')}", metrics, evidence)
        if obs.get("orphans"):
            evidence["orphans"] = repr(obs["orphans"])
            return Outcome(Verdict.BUG, f"{len(obs['orphans'])} process(es) outlived the master",
                           "orphaned-children", metrics, evidence)
        metrics["key_figure"] = f"exit 0 in {obs['exit_s']:.1f}s"
        return Outcome(Verdict.PASS, f"ready in {obs['ready_s']:.1f}s; callback once with "
                       f"{callbacks[0]} after {obs['callback_s']:.1f}s; warm shutdown exit 0 in "
                       f"{obs['exit_s']:.1f}s", None, metrics, evidence)


SCENARIO = LifecycleSmoke()
