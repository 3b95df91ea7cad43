"""silent-exit: start a worker under one condition and classify how the start ended.

Contract: the mode is a start-up condition (lab.scenarios.startup_conditions:
a shutdown signal at a named start-up moment, fork refused, /dev/shm
read-only or missing, a low RLIMIT_AS, a broker that refuses or never
answers, stdout/stderr closed, a stdout reader that exits, SystemExit(0)
after the banner, container-like wrappers). Workload: none — one start,
watched for START_BOUND seconds. Observations: readiness (log line or
worker_ready, then alive CONFIRM_S later; a shutdown journaled during the
start gets diagnose.PENDING_GRACE_S more to take effect), the exit code or
signal a supervisor sees, the shutdown line, the lines at WARNING+, the
banner, what was left running, the journaled hook, and what a SIGTERM does
to the worker afterwards (noted, not judged). Workers start with default
signal dispositions (an exec shim), whatever the lab process inherited.
Checker (lab.diagnose.classify_start, the same classifier `lab diagnose` uses):
  pass         reached ready, or exited non-zero and something at WARNING+ said why;
  silent-exit  ended before ready with status 0, or with nothing at WARNING+;
  hang         neither ready nor exited within the bound (with or without output);
  n/a          the condition's hook never fired although the worker became ready.
"""

from __future__ import annotations

from typing import Any

from lab.diagnose import classify_start, describe_exit
from lab.scenarios.base import CellContext, Scenario
from lab.observers.start_watch import watch_start
from lab.scenarios.startup_conditions import DESCRIPTIONS, Condition, not_applicable, parse, prepare
from lab.verdict import Outcome, Verdict

START_BOUND = 30.0
CONFIRM_S = 2.0


class SilentExit(Scenario):
    name = "silent-exit"

    def not_for(self, cell) -> str | None:
        Condition(cell.mode)  # an unknown mode is a lab error, not n/a
        return not_applicable(cell.mode, cell.broker)

    def run(self, ctx: CellContext) -> dict[str, Any]:
        mode = Condition(ctx.cell.mode).value
        prepared = prepare(mode, ctx.cell.broker, ctx.workdir, ctx.worker_env)
        try:
            worker = ctx.worker("worker", **prepared.overrides).start()
            obs = watch_start(worker, START_BOUND, CONFIRM_S, stop_ready=False)  # the judge reads the start only
            if prepared.listener is not None:
                obs["silent_broker"] = {"connections": len(prepared.listener.accepted),
                                        "bytes_received": prepared.listener.received}
        finally:
            prepared.close()
        obs.update({"condition": mode, "condition_text": DESCRIPTIONS[mode], "notes": prepared.notes,
                    "pool": ctx.cell.pool, "command": worker.environment.get("argv")})
        return obs

    def judge(self, obs: dict[str, Any]) -> Outcome:
        sig, moment = parse(obs.get("condition", ""))
        hooked = bool(sig) or obs.get("condition") == "systemexit0"
        evidence = {"log_tail": obs.get("tail", ""), "loud_lines": "\n".join(obs.get("loud_lines") or []),
                    "shutdown_lines": "\n".join(obs.get("shutdown_lines") or []),
                    "condition": obs.get("condition_text", "")}
        if obs.get("hook"):
            hook = obs["hook"]
            evidence["hook"] = (f"{hook.get('action')} at {hook.get('moment')} via {hook.get('via')}; "
                                f"handler then: {hook.get('handler')}")
        if obs.get("leftovers"):
            evidence["leftovers"] = repr(obs["leftovers"])
        if obs.get("inner_status") is not None:
            evidence["inner_status"] = f"the worker itself exited {obs['inner_status']} (behind the pipe)"
        if obs.get("notes"):
            evidence["notes"] = "; ".join(obs["notes"])
        metrics = {"ready_s": obs.get("ready_s"), "exit_code": obs.get("exit_code"),
                   "exit_signal": obs.get("exit_signal"), "elapsed_s": obs.get("elapsed_s"),
                   "banner": obs.get("banner_seen"), "leftovers": len(obs.get("leftovers") or [])}
        if hooked and obs.get("ready") and not obs.get("hook"):
            return Outcome(Verdict.NA, f"the hook for {obs.get('condition')} never fired: the moment "
                           f"'{moment or 'consumer'}' is not reached by this pool/version",
                           "hook-not-reached", {**metrics, "key_figure": "n/a"}, evidence)
        start = classify_start(obs)
        evidence["causes"] = "\n".join(start.causes)
        if start.klass == "ready":
            signature = None if start.sub == "ready" else f"ready:{start.sub}"
            metrics["key_figure"] = f"ready {obs.get('ready_s', 0):.1f}s"
        elif start.klass == "failed-loudly":
            names = [m["name"] for m in obs.get("signatures") or []]
            signature = "failed-loudly" + (f":{names[0]}" if names else "")
            metrics["key_figure"] = describe_exit(obs.get("exit_code"), obs.get("exit_signal"))
        elif start.klass == "hang":
            signature = f"start-hang:{start.sub}"
            metrics["key_figure"] = "hang"
        else:
            signature = f"silent-exit:{start.sub}"
            metrics["key_figure"] = describe_exit(obs.get("exit_code"), obs.get("exit_signal"))
        metrics["class"] = f"{start.klass}/{start.sub}"
        summary = start.summary
        if obs.get("hook"):
            summary = f"{obs['hook'].get('action')} at {obs['hook'].get('moment')}: {summary}"
        if obs.get("inner_status") is not None and start.klass != "ready":
            summary += f" (the worker itself exited {obs['inner_status']})"
        for key, what in (("stop_after_ready", "the ready worker"), ("stop_after_hang", "the hung worker")):
            stop = obs.get(key) or ""
            if stop:  # what a SIGTERM did afterwards: noted, not judged here
                evidence[key] = stop
            if stop.startswith("still running"):
                summary += f"; SIGTERM to {what}'s process group: {stop}"
        return Outcome(Verdict(start.verdict), summary, signature, metrics, evidence)


SCENARIO = SilentExit()
