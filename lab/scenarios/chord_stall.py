"""chord-stall: a chord member's child dies, its message vanishes, or it overruns (issue 5).

Contract. Workload: a chord of MEMBERS members — short ones and one target
member (the last, LONG_S long) — with the journaling `lab.collect` callback.
Modes (the fault, applied to the target only):
  child-death  SIGKILL the pool child running the target: the pid its
               exec_start journal event names, checked to be a child of this
               master (an OOM kill; the master survives). n/a for pools
               without child processes (lab.catalog.POOLS_WITH_CHILDREN);
  lost-member  the chord is sent while no worker consumes, the target's
               message is taken out of the broker (chord_faults.remove_message),
               then the worker starts;
  time-limit   the target carries a per-task hard limit (time_limit=TL_S).
Observations over the mode's window (WINDOW_S) after t=0 (the kill; the limit's expiry;
the worker ready, for lost-member), ending LINGER_S after an outcome: the
ledger (executions, callback firings and input), the chord body's state as
the caller sees it (client-side state polls), journal task_failure events and
log lines naming WorkerLostError / the hard limit, celery.chord_unlock polls
(task_prerun) and retries (task_postrun RETRY) with its retry policy, member
states, the Redis backend's join counter, a broker snapshot of the target.
Checker:
  pass        callback once with correct input within the window;
  failed-fast the caller saw the chord body FAILURE (a chord error) within it;
  incomplete  neither within the window (N s), and something still waits:
              chord_unlock polling, the member's message parked or queued, a
              join counter short of its size — in lost-member always (the
              chord waits for a member that cannot come; the evidence says
              whether anything even polls). Never "stall": nothing completed;
  lost        neither, and nothing waits (the work is gone, nothing says so);
  duplicate   a second callback, wrong input, a member completed twice, or a
              callback and a chord error both.
"""

from __future__ import annotations

import time
from typing import Any

from lab import catalog
from lab.journal import select
from lab.scenarios.base import CellContext, Scenario
from lab.observers.broker_snapshot import describe, snapshot
from lab.scenarios.chord_faults import body_state, chord_state, remove_message, unlock_policy
from lab.scenarios.chord_workload import callback_verdict_facts, dispatch_chord, ledger
from lab.observers.exit import exit_observation, judge_start_failure
from lab.verdict import Outcome, Verdict
from lab.waits import hold

MEMBERS = 4
SHORT_S, LONG_S = 0.3, 5.0
TARGET = MEMBERS - 1
TARGET_KEY = f"member-{TARGET}"
TL_S = 2.0            # the target's hard time limit (time-limit mode)
KILL_AFTER_S = 1.0    # into the target's run (child-death mode)
# The bound for pass / failed-fast after t=0: a child's death reaches Celery up to 10 s late
# (worker_lost_wait, without the event loop: SQL broker); measured (issue 15, reference run
# 20261201-225052, 2 cores, 4 lanes): the latest outcome of any cell came 17.2 s after the fault
# (SQL broker, child-death), on Redis 8.6 s (callback under retry-on-worker-lost, 5.7.0), so 25 s
# stays. A lost member never runs at all and nothing retries it (the join counter waits forever;
# chord_unlock retries without a limit): its window, a negative deadline that always runs out,
# only has to show the unlock's polls (one a second) — 8 s, the latest Redis outcome, not 15 s.
WINDOW_S = {"child-death": 25.0, "time-limit": 25.0, "lost-member": 8.0}
LINGER_S = 3.0        # after an outcome: time for a duplicate to show
POLL_S = 0.3
UNLOCK = "celery.chord_unlock"
LOG_MARKERS = {"worker_lost": ("WorkerLostError", "Worker exited prematurely"),
               "hard_limit": ("Hard time limit", "TimeLimitExceeded")}


class ChordStall(Scenario):
    name = "chord-stall"

    def not_for(self, cell) -> str | None:
        if cell.mode == "child-death" and cell.pool not in catalog.POOLS_WITH_CHILDREN:
            return (f"pool {cell.pool} runs tasks without child processes: "
                    "there is no pool child to kill (child-death needs prefork)")
        return None

    def run(self, ctx: CellContext) -> dict[str, Any]:
        mode, broker, began = ctx.cell.mode, ctx.worker_env["LAB_BROKER_URL"], time.monotonic()
        worker = ctx.worker("worker")
        obs: dict[str, Any] = {"mode": mode, "pool": ctx.cell.pool, "window_s": WINDOW_S[mode],
                               "long_s": LONG_S, "tl_s": TL_S, "members": MEMBERS, "timing": {}}
        mark = lambda what: obs["timing"].__setitem__(what, round(time.monotonic() - began, 2))  # noqa: E731
        durations = [SHORT_S] * (MEMBERS - 1) + [LONG_S]
        sent: dict[str, Any] = {}
        if mode == "lost-member":
            sent = dispatch_chord(ctx, durations, errback=True)
            mark("sent")
            obs["snapshot_before_removal"] = snapshot(broker, ctx.queue, sent["member_ids"])
            obs["removal"] = remove_message(broker, ctx.queue, sent["member_ids"][TARGET])
            if not obs["removal"].get("removed"):
                obs["fault_error"] = f"the target's message was not removed: {obs['removal']}"
        worker.start()
        obs["ready"] = worker.wait_ready(60)
        mark("ready")
        if not obs["ready"]:
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        t0 = time.monotonic()
        if mode != "lost-member":
            opts = {TARGET: {"time_limit": TL_S}} if mode == "time-limit" else None
            sent = dispatch_chord(ctx, durations, opts, errback=True)
            mark("sent")
            starts = ctx.wait_for(lambda ev: ledger(ev).starts.get(TARGET_KEY), 30)
            if not starts:
                obs["fault_error"] = "the target member never started within 30 s"
            elif mode == "time-limit":
                t0 = starts[0]["mono"] + TL_S
            else:
                ctx.wait_for(lambda ev: all(ledger(ev).completions(f"member-{i}") for i in range(TARGET)), 10)
                hold(max(0.0, starts[0]["mono"] + KILL_AFTER_S - time.monotonic()))
                obs["kill"] = self._kill(worker, starts[0]["pid"], ledger(ctx.events()).completions(TARGET_KEY))
                if obs["kill"].get("error"):
                    obs["fault_error"] = obs["kill"]["error"]
                t0 = obs["kill"].get("mono", time.monotonic())
        obs.update(sent)
        mark("fault")
        if not obs.get("fault_error"):
            obs.update(self._watch(ctx, sent, t0, WINDOW_S[mode]))
        mark("watched")
        obs.update(self._collect(ctx, worker, sent, t0))
        mark("collected")
        return obs

    @staticmethod
    def _kill(worker, pid: int, completed: int) -> dict[str, Any]:
        kids = [c.pid for c in worker.children()]
        if completed:
            return {"pid": pid, "error": "the target finished before the kill (the host is too slow)"}
        if pid not in kids:
            return {"pid": pid, "children": kids, "error": f"the target's pid {pid} is not a child of the master"}
        killed = worker.kill_child(pid)
        return {"pid": killed, "mono": worker.faults[-1]["mono"], "children_before": kids}

    @staticmethod
    def _watch(ctx: CellContext, sent: dict[str, Any], t0: float, window: float) -> dict[str, Any]:
        """Poll journal and the caller's view of the body until an outcome (+linger) or the window ends."""
        app, seen, outcome_at = ctx.client(), {}, None
        while True:
            now = time.monotonic()
            try:
                state, error = body_state(app, sent["body_id"])
            except Exception as exc:
                state, error = "unreadable", f"{type(exc).__name__}: {exc}"[:200]
            if state not in seen:
                seen[state] = {"t": round(now - t0, 3), "error": error}
            if outcome_at is None and (ledger(ctx.events()).callbacks or state in ("SUCCESS", "FAILURE")):
                outcome_at = now
            if now >= t0 + window or (outcome_at is not None and now >= outcome_at + LINGER_S):
                return {"body_states_seen": seen, "observed_until_s": round(now - t0, 3)}
            hold(POLL_S)

    @staticmethod
    def _collect(ctx: CellContext, worker, sent: dict[str, Any], t0: float) -> dict[str, Any]:
        events = ctx.events()
        rel = lambda e: round(e["mono"] - t0, 3)  # noqa: E731
        led = ledger(events).to_obs()
        errbacks = led["member_starts"].pop(sent.get("body_id"), [])  # lab.churn keyed by the body id
        led["member_ends"].pop(sent.get("body_id"), None)
        out: dict[str, Any] = {
            "errback_runs": [round(x - t0, 3) for x in errbacks],
            "member_starts": {k: [round(x - t0, 3) for x in v] for k, v in led["member_starts"].items()},
            "member_ends": {k: [round(x - t0, 3) for x in v] for k, v in led["member_ends"].items()},
            "member_start_pids": led["member_start_pids"],
            "callbacks": [{**c, "t": round(c["mono"] - t0, 3)} for c in led["callbacks"]],
            "failures": [{"t": rel(e), "task": e.get("task"), "task_id": e.get("task_id"),
                          "exception": str(e.get("exception"))[:200]} for e in select(events, "task_failure")],
            "unlock_polls": [rel(e) for e in select(events, "task_prerun", task=UNLOCK)],
            "unlock_retries": len(select(events, "task_postrun", task=UNLOCK, state="RETRY")),
            "unlock_policy": unlock_policy(ctx.client()) if sent else {},
        }
        log = worker.log_text().splitlines()
        hits = {k: [l[:240] for l in log if any(m in l for m in marks)] for k, marks in LOG_MARKERS.items()}
        out["log_lines"] = {k: v[:6] for k, v in hits.items()}
        out["log_counts"] = {k: len(v) for k, v in hits.items()}
        out["log_tail"] = "\n".join(log[-15:])
        if sent:
            out["chord_state"] = chord_state(ctx.client(), sent)
            target = sent["member_ids"][TARGET]
            out["snapshot_end"] = snapshot(ctx.worker_env["LAB_BROKER_URL"], ctx.queue, [target])
            out["where"] = describe(out["snapshot_end"], target)
        return out

    def judge(self, obs: dict[str, Any]) -> Outcome:
        if not obs["ready"]:
            return judge_start_failure(obs)
        if obs.get("fault_error"):
            return Outcome(Verdict.ERROR, f"the lab could not apply the fault: {obs['fault_error']}",
                           "lab-fault-not-applied", {"key_figure": "error"}, {"log_tail": obs.get("log_tail", "")})
        facts = callback_verdict_facts(obs, MEMBERS)
        callbacks, mode, window = obs.get("callbacks") or [], obs["mode"], obs["window_s"]
        seen = obs.get("body_states_seen") or {}
        failure = seen.get("FAILURE")
        polls = obs.get("unlock_polls") or []
        until = obs.get("observed_until_s", window)
        recent_polls = [t for t in polls if t > until - window / 3]
        target_starts = obs.get("member_starts", {}).get(TARGET_KEY, [])
        reruns = [t for t in target_starts if t > 0] if mode != "lost-member" else target_starts
        state = obs.get("chord_state") or {}
        counter = state.get("counter")
        lost_errors = [f for f in obs.get("failures", []) if "WorkerLost" in f["exception"]]
        limit_errors = [f for f in obs.get("failures", []) if "TimeLimit" in f["exception"]]
        metrics = {"mode": mode, "window_s": window, "observed_until_s": until, "callbacks_fired": facts["fired"],
                   "callback_s": callbacks[0]["t"] if callbacks else None,
                   "chord_error_s": failure["t"] if failure else None,
                   "target_runs": len(target_starts), "target_rerun_s": reruns[0] if reruns else None,
                   "target_completions": len(obs.get("member_ends", {}).get(TARGET_KEY, [])),
                   "worker_lost_failures": len(lost_errors), "time_limit_failures": len(limit_errors),
                   "worker_lost_log_lines": (obs.get("log_counts") or {}).get(
                       "worker_lost", len(obs["log_lines"].get("worker_lost", []))),
                   "errback_runs": len(obs.get("errback_runs") or []),
                   "unlock_polls": len(polls), "unlock_polls_last_third": len(recent_polls),
                   "unlock_retries": obs.get("unlock_retries", 0),
                   "unlock_max_retries": (obs.get("unlock_policy") or {}).get("max_retries"),
                   "unlock_interval_s": (obs.get("unlock_policy") or {}).get("interval_s"),
                   "body_state_end": state.get("body_state"), "member_states_end": state.get("member_states"),
                   "join_counter": counter}
        if mode == "time-limit":
            metrics["limit_enforced"] = bool(limit_errors or obs["log_lines"].get("hard_limit")) \
                or metrics["target_completions"] == 0
        evidence = {"body_states_seen": repr(seen), "chord_error": (failure or {}).get("error") or "",
                    "callback_input": repr([c["received"] for c in callbacks]),
                    "failures": repr(obs.get("failures", [])[:6]),
                    "worker_lost_log": "\n".join(obs["log_lines"].get("worker_lost", [])),
                    "hard_limit_log": "\n".join(obs["log_lines"].get("hard_limit", [])),
                    "unlock_polls": repr(polls[-40:]), "where_target_end": obs.get("where", ""),
                    "snapshot_end": repr(obs.get("snapshot_end")), "log_tail": obs.get("log_tail", "")}
        for key in ("kill", "removal"):
            if key in obs:
                evidence[key] = repr(obs[key])
        return self._verdict(obs, facts, metrics, evidence, failure, recent_polls, counter, reruns)

    @staticmethod
    def _verdict(obs, facts, metrics, evidence, failure, recent_polls, counter, reruns) -> Outcome:
        mode, until, callbacks = obs["mode"], metrics["observed_until_s"], obs.get("callbacks") or []
        cause = ("WorkerLostError" if metrics["worker_lost_failures"] else
                 "TimeLimitExceeded" if metrics["time_limit_failures"] else None)
        errbacks = metrics["errback_runs"]
        if (facts["fired"] > 1 or facts["wrong_inputs"] or facts["duplicate_members"] or errbacks > 1
                or (facts["fired"] and (failure or errbacks))):
            what = (f"callback fired {facts['fired']}x" if facts["fired"] > 1 else
                    f"callback input {facts['wrong_inputs'][0]}" if facts["wrong_inputs"] else
                    f"members completed twice: {facts['duplicate_members']}" if facts["duplicate_members"] else
                    f"chord error delivered {errbacks}x: the body's errback ran {errbacks} times"
                    if errbacks > 1 else "callback fired and a chord error was delivered too")
            metrics["key_figure"] = f"duplicate: errback {errbacks}x" if errbacks > 1 else "duplicate"
            also = ["failed-fast"] if failure and not facts["fired"] else []
            error = f" ({(failure.get('error') or '')[:160]})" if failure else ""
            return Outcome(Verdict.DUPLICATE, what + error,
                           "chord-error-twice" if errbacks > 1 and not facts["fired"] else "chord-duplicate",
                           metrics, evidence, also=also)
        if facts["fired"] == 1:
            t = callbacks[0]["t"]
            metrics["key_figure"] = f"pass {t:.0f}s"
            how = (f"target re-ran {reruns[0]:.1f}s after the fault" if reruns and mode != "lost-member" else
                   "time limit not enforced by this pool: the target ran to the end"
                   if mode == "time-limit" and not metrics.get("limit_enforced") else "no re-run")
            return Outcome(Verdict.PASS, f"callback once with correct input {t:.1f}s after the fault ({how})",
                           None, metrics, evidence)
        if failure:
            metrics["key_figure"] = f"failed-fast {failure['t']:.0f}s"
            return Outcome(Verdict.FAILED_FAST, f"the caller saw the chord body FAILURE {failure['t']:.1f}s after "
                           f"the fault: {(failure.get('error') or '')[:160]}"
                           + (f" (member failed with {cause})" if cause else ""), None, metrics, evidence)
        parked = obs.get("member_ids") and obs["member_ids"][TARGET] in (obs.get("snapshot_end") or {}).get(
            "parked_task_ids", []) + (obs.get("snapshot_end") or {}).get("queued_task_ids", [])
        counter_open = bool(counter and counter.get("size") is not None and counter["joined"] < counter["size"])
        running = bool(reruns) and metrics["target_completions"] == 0 and mode == "child-death"
        if recent_polls:
            sig, metrics["key_figure"] = "chord-unlock-polls-forever", f"incomplete: {metrics['unlock_polls']} unlock polls"
            cap, every = metrics["unlock_max_retries"], metrics["unlock_interval_s"] or 0
            ends = "it never stops" if cap is None else f"it gives up after {cap} retries (~{cap * every:.0f}s)"
            why = (f"celery.chord_unlock polled {metrics['unlock_polls']}x ({len(recent_polls)} in the last third, "
                   f"{metrics['unlock_retries']} retries; max_retries={cap}: {ends})")
        elif counter_open:
            sig = "chord-join-counter-open"
            metrics["key_figure"] = f"incomplete: join {counter['joined']}/{counter['size']}, no poller"
            why = f"the join counter stands at {counter['joined']}/{counter['size']} and nothing polls"
        elif parked or running:
            sig, metrics["key_figure"] = "member-pending", "incomplete: member pending"
            why = f"the target is still pending ({obs.get('where') or 'running'})"
        elif mode == "lost-member":
            sig, metrics["key_figure"] = "chord-waits-silently", "incomplete: silent"
            why = "nothing polls and nothing says the chord cannot complete"
        else:
            metrics["key_figure"] = "lost"
            return Outcome(Verdict.LOST, f"no callback and no chord error within {until:.0f}s; nothing waits "
                           f"for the target ({obs.get('where', '')}); body {metrics['body_state_end']}"
                           + (f"; member failed with {cause}" if cause else ""), None, metrics, evidence)
        return Outcome(Verdict.INCOMPLETE, f"never completed: no callback and no chord error within {until:.0f}s; {why}; "
                       f"body {metrics['body_state_end']}" + (f"; member failed with {cause}" if cause else ""),
                       sig, metrics, evidence)


SCENARIO = ChordStall()
