"""remote-control: Celery's remote control at a chosen moment (fault family `control`).

Contract: the mode is a lab.faults.control.Control operation, sent through
the client's `app.control` to this worker's hostname:
  shutdown            `control.shutdown()` while CAPACITY long tasks run;
                      documented as a warm shutdown (docs/userguide/workers.rst,
                      "Remote control": shutdown "gracefully"), so judged like
                      one: running tasks finish, exit 0;
  revoke-terminate    `revoke(id, terminate=True)` of the one running long
                      task; then a fresh task must still run;
  revoke-queued-warm  long tasks running, short ones prefetched; SIGTERM (a
                      warm shutdown), then, REVOKE_AFTER_TERM_S later while
                      the running tasks finish, revoke one prefetched task
                      (celery/celery#8417: revokes after a warm shutdown
                      began); a drain worker shows what came back;
  pool-shrink / pool-grow  `pool_shrink(1)` / `pool_grow(1)` on prefork, then
                      fresh tasks, then SIGTERM.
Observations: the call and its replies, the journal ledger per task key
(lab.scenarios.shutdown_semantics.ledger: first worker vs drain), the
exit code, orphans, tracebacks (lab.observers.exit). Checker `judge(obs)`,
pure, every deviation a Finding (headline by lab.verdict.HEADLINE_ORDER):
a traceback (crash), hang, an unclean exit, orphans; shutdown: a running
task cut (`control-shutdown-not-warm`); revoke-terminate: the task ran to
its end (`revoke-terminate-ignored`), no fresh work after it
(`no-work-after-revoke`); revoke-queued-warm: the revoked task ran on the
same worker (`revoked-task-ran`), the worker, still running, did not answer
the revoke (`revoke-unanswered-in-warm-shutdown`), a non-revoked task lost
or run twice; the
revoked task running on the drain worker is noted, not a finding (revokes
live in worker memory unless --statedb: "Persistent revokes"); pool: an
error reply, the pool size unchanged, fresh work not done.
n/a: brokers without fanout (no pidbox: the SQL transport); pool-shrink/grow
on pools without child processes.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from lab import catalog
from lab.faults import control
from lab.faults.control import Control
from lab.journal import select
from lab.observers.drain import drain
from lab.scenarios.base import CellContext, Scenario
from lab.observers.exit import exit_observation, judge_start_failure
from lab.scenarios.shutdown_semantics import ledger
from lab.scenarios.findings import crash_findings, exit_findings
from lab.verdict import Finding, Outcome, Verdict
from lab.waits import hold, waiting

LONG_S = 5.0
SHORT_S = 0.3
PREFETCH = 3
FRESH = 6
EXIT_BOUND = LONG_S + 20.0
REVOKE_WAIT_S = 6.0
FRESH_BOUND = 15.0
DRAIN_S = 12.0
REVOKE_AFTER_TERM_S = 0.5
# pool_grow/pool_shrink change the pool's size at once, but prefork starts or stops the process
# at its next maintain_pool tick: every 5.0 s (celery/concurrency/asynpool.py v5.6.2, `timers`:
# {self.maintain_pool: 5.0}), or when a child exits. The check waits out one full period plus
# margin; a fixed 2 s sample passed or failed by the tick's phase (issue 15: it flipped when the
# 1 s post-ready confirmation went away).
POOL_SETTLE_S = 6.5


class RemoteControl(Scenario):
    name = "remote-control"

    def not_for(self, cell) -> str | None:
        Control(cell.mode)
        if cell.mode in ("pool-shrink", "pool-grow") and cell.pool not in catalog.POOLS_WITH_CHILDREN:
            return f"the {cell.pool} pool has no child processes to add or remove"
        return None

    def applies(self, ctx: CellContext) -> str | None:
        if not control.supported(ctx.worker_env["LAB_BROKER_URL"]):
            return ("the broker's kombu transport has no fanout exchanges: remote control (the pidbox) "
                    "does not work on it")
        return None

    # -- drive ---------------------------------------------------------------
    def run(self, ctx: CellContext) -> dict[str, Any]:
        mode = Control(ctx.cell.mode)
        worker = ctx.worker("worker").start()
        obs: dict[str, Any] = {"mode": mode.value, "pool": ctx.cell.pool, "ready": worker.wait_ready(60),
                               "settings": ctx.profile.get("settings") or {}}
        if not obs["ready"]:
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        app, sent = ctx.client(), {}
        capacity = 1 if ctx.cell.pool == "solo" else ctx.cell.concurrency

        def send(key: str, seconds: float) -> str:
            task_id = app.send_task("lab.sleep", args=(seconds,), kwargs={"key": key}, queue=ctx.queue).id
            sent[task_id] = key
            return task_id

        def started(n: int) -> None:
            ctx.wait_for(lambda ev: len(select(ev, "exec_start")) >= n, 20.0)

        signal_monos: list[float] = []
        drain_info: dict[str, Any] = {}
        if mode in (Control.SHUTDOWN, Control.REVOKE_QUEUED_WARM):
            for i in range(capacity):
                send(f"run-{i}", LONG_S)
            started(capacity)
            hold(0.5)
            if mode == Control.SHUTDOWN:
                obs["call"] = control.send(app, mode, worker.hostname)
                signal_monos.append(obs["call"]["mono"])
            else:
                queued = [send(f"pre-{i}", SHORT_S) for i in range(PREFETCH)]
                ctx.wait_for(lambda ev: len(select(ev, "task_received")) >= capacity + PREFETCH, 3.0)
                obs["revoked_key"] = sent[queued[0]]
                signal_monos.append(time.monotonic())
                worker.send(signal.SIGTERM)
                hold(REVOKE_AFTER_TERM_S)  # the warm shutdown is under way: running tasks finish
                obs["call"] = control.send(app, mode, worker.hostname, task_id=queued[0])
                obs["alive_at_revoke"] = worker.is_alive()
            obs.update(exit_observation(worker, bound=EXIT_BOUND))
        elif mode == Control.REVOKE_TERMINATE:
            target = send("target", LONG_S)
            started(1)
            hold(0.5)
            obs["call"] = control.send(app, mode, worker.hostname, task_id=target)
            revoked = ctx.wait_for(lambda ev: select(ev, "task_revoked", task_id=target), REVOKE_WAIT_S)
            obs["revoked_event"] = revoked[0] if revoked else None
            obs.update(self._fresh(ctx, send))
            signal_monos.append(time.monotonic())
            worker.send(signal.SIGTERM)
            obs.update(exit_observation(worker, bound=EXIT_BOUND))
        else:  # pool-shrink / pool-grow
            obs["children_before"] = [c.pid for c in worker.children()]
            want = len(obs["children_before"]) + (1 if mode == Control.POOL_GROW else -1)
            obs["call"] = control.send(app, mode, worker.hostname, n=1)
            called = time.monotonic()
            with waiting("observe"):  # the resize happens at the pool's next maintain_pool tick
                while len(worker.children()) != want and time.monotonic() - called < POOL_SETTLE_S:
                    hold(0.1)
            settled = len(worker.children()) == want
            obs["children_settled_s"] = round(time.monotonic() - called, 2) if settled else None
            obs["children_at_2s"] = [c.pid for c in worker.children()]  # older records: sampled at 2 s
            obs.update(self._fresh(ctx, send))
            hold(1.0)
            obs["children_after"] = [c.pid for c in worker.children()]
            signal_monos.append(time.monotonic())
            worker.send(signal.SIGTERM)
            obs.update(exit_observation(worker, bound=EXIT_BOUND))
        if mode == Control.REVOKE_QUEUED_WARM and obs.get("exit_code") is not None:
            if obs.get("orphans"):
                worker.teardown()  # a drain worker must not compete with survivors (listed above)
            drain_info = drain(ctx, set(sent.values()) - {obs["revoked_key"]}, DRAIN_S, task_ids=sent)
        obs.update(drain_info)
        obs["signal_monos"] = signal_monos
        obs["events"] = ledger(ctx.events(), sent, signal_monos, drain_info.get("drain_mono"))
        obs["exit_mono"] = next((f["mono"] for f in worker.faults if f["kind"] == "exit"), None)
        if obs["exit_mono"] is not None and signal_monos:  # from the call or the signal, not the start
            obs["exit_s"] = round(obs["exit_mono"] - signal_monos[0], 3)
        return obs

    @staticmethod
    def _fresh(ctx: CellContext, send) -> dict[str, Any]:
        keys = {f"fresh-{i}" for i in range(FRESH)}
        t0 = time.monotonic()
        for key in sorted(keys):
            send(key, SHORT_S)
        done = ctx.wait_for(lambda ev: keys <= {e.get("key") for e in select(ev, "exec_end")}, FRESH_BOUND)
        return {"fresh_done": bool(done), "fresh_s": round(time.monotonic() - t0, 2) if done else None,
                "fresh_sent_mono": t0}

    # -- judge ---------------------------------------------------------------
    def judge(self, obs: dict[str, Any]) -> Outcome:
        if not obs.get("ready"):
            return judge_start_failure(obs)
        mode, findings = obs["mode"], []
        keys = (obs.get("events") or {}).get("keys", {})
        call = obs.get("call") or {}

        def find(verdict: Verdict, code: str, text: str, evidence: str = "", crash: bool = False) -> None:
            findings.append(Finding(verdict, code, text, {"evidence": evidence} if evidence else {}, crash))

        findings.extend(crash_findings(obs))
        if call.get("error"):
            find(Verdict.FAILED_FAST, "control-call-failed", f"app.control raised {call['error']}")
        findings.extend(exit_findings(obs, f"no exit within {EXIT_BOUND:.0f}s", "the worker ended with {desc}",
                                      obs.get("log_tail", "")[-1500:]))
        exit_mono = obs.get("exit_mono")
        if mode in ("shutdown", "revoke-queued-warm"):
            cut = [k for k, r in keys.items() if k.startswith("run-") and r["w1_starts"]
                   and not [m for m in r["w1_ends"] if exit_mono is None or m <= exit_mono]]
            if cut and exit_mono is not None:
                find(Verdict.BUG, "control-shutdown-not-warm" if mode == "shutdown" else "warm-shutdown-cut",
                     f"running task(s) {', '.join(sorted(cut))} did not finish before the worker exited "
                     f"({'control.shutdown() is documented as a warm shutdown' if mode == 'shutdown' else 'SIGTERM'})")
        if mode == "revoke-queued-warm":
            revoked = keys.get(obs.get("revoked_key") or "", {})
            if obs.get("alive_at_revoke") and not call.get("error") and not call.get("reply"):
                find(Verdict.BUG, "revoke-unanswered-in-warm-shutdown",
                     f"the worker, still in its warm shutdown, did not answer the revoke within "
                     f"{control.REPLY_TIMEOUT_S:.0f}s (reply: {call.get('reply')!r})")
            if revoked.get("w1_starts"):
                find(Verdict.BUG, "revoked-task-ran", f"the revoked task {obs['revoked_key']} ran on the worker "
                     "that acknowledged the revoke")
            others = {k: r for k, r in keys.items() if k != obs.get("revoked_key")}
            if obs.get("drain_ready"):
                left = set(obs.get("drain_left_in_broker") or [])  # the drain's bound ran out: not lost
                lost = sorted(k for k, r in others.items() if not r["w1_ends"] and not r["drain_ends"]
                              and k not in left)
                if lost:
                    find(Verdict.LOST, "task-lost", f"{len(lost)} task(s) never ran anywhere: {', '.join(lost)}")
            dups = sorted(k for k, r in others.items() if len(r["w1_ends"]) + len(r["drain_ends"]) > 1)
            if dups:
                find(Verdict.DUPLICATE, "task-ran-twice", f"ran twice: {', '.join(dups)}")
        refused = [v for r in call.get("reply") or [] for v in (r or {}).values()
                   if isinstance(v, dict) and "error" in v]
        if mode == "revoke-terminate":
            target = keys.get("target", {})
            if refused:
                find(Verdict.FAILED_FAST, "revoke-terminate-refused", f"the worker replied {refused[0]['error']}"
                     f"{' and the task ran to its end' if target.get('w1_ends') else ''}")
            elif target.get("w1_ends"):
                find(Verdict.BUG, "revoke-terminate-ignored", "the task revoked with terminate=True ran to its end "
                     f"(revoked event: {bool(obs.get('revoked_event'))}; reply: {call.get('reply')})")
            elif not obs.get("revoked_event"):
                find(Verdict.BUG, "revoke-not-journaled", f"no task_revoked within {REVOKE_WAIT_S:.0f}s of the "
                     f"revoke (reply: {call.get('reply')})")
        if mode in ("revoke-terminate", "pool-shrink", "pool-grow") and not obs.get("fresh_done"):
            find(Verdict.INCOMPLETE, "no-work-after-" + ("revoke" if mode == "revoke-terminate" else "resize"),
                 f"{FRESH} fresh tasks not all done within {FRESH_BOUND:.0f}s after the {mode}")
        if mode in ("pool-shrink", "pool-grow"):
            errors = refused
            before, after = len(obs.get("children_before") or []), len(obs.get("children_after") or [])
            want = before + (1 if mode == "pool-grow" else -1)
            if errors:
                find(Verdict.FAILED_FAST, "pool-control-refused", f"the worker replied {errors[0]}")
            elif after != want:
                settle = (f"not within {POOL_SETTLE_S:.1f}s of the call, a full maintain_pool period"
                          if "children_settled_s" in obs else f"{len(obs.get('children_at_2s') or [])} at 2 s")
                find(Verdict.BUG, "pool-size-unchanged", f"{before} children before, {after} after {mode} and "
                     f"{FRESH} tasks (expected {want}; {settle}); reply: {call.get('reply')}")
        metrics = {"mode": mode, "exit_code": obs.get("exit_code"), "exit_s": obs.get("exit_s"),
                   "fresh_s": obs.get("fresh_s"), "children_before": len(obs.get("children_before") or []),
                   "children_at_2s": len(obs.get("children_at_2s") or []),
                   "children_settled_s": obs.get("children_settled_s"),
                   "children_after": len(obs.get("children_after") or [])}
        if mode == "revoke-queued-warm":
            revoked = keys.get(obs.get("revoked_key") or "", {})
            metrics["revoked_ran_on_drain"] = bool(revoked.get("drain_ends"))
        evidence = {"call": repr(call), "log_tail": obs.get("log_tail", ""),
                    "tasks": repr({k: {p: len(v) for p, v in r.items() if p.endswith(("starts", "ends"))}
                                   for k, r in keys.items()})}
        note = ("; the revoked task ran on the drain worker (revokes are kept in worker memory unless "
                "--statedb)" if metrics.get("revoked_ran_on_drain") else "")
        metrics["key_figure"] = findings[0].signature if findings else f"exit {obs.get('exit_code')}"
        return Outcome.of(findings, metrics, evidence,
                          passed=f"{mode}: as documented; {obs.get('exit_desc')}{note}")


SCENARIO = RemoteControl()
