"""The shutdown scenario's signal plans, task ledger and checker (pure, no Celery).

Contract: PLANS maps each mode to its signals and the documented semantics it
must follow (docs/userguide/workers.rst, "Worker Shutdown"):
  warm  finish the running tasks, start no new ones, exit 0;
  cold  stop at once (running tasks are not waited for);
  soft  give running tasks up to worker_soft_shutdown_timeout, then cold.
Under every plan a task that was never acknowledged (prefetched, or running
with acks_late) must come back; a task must not run twice; no process may
outlive the master; no traceback. `ledger()` folds the journal into one
record per task key (where it was received, started, ended: the first worker
or the drain worker). `judge(obs)` keeps every deviation as a Finding with
its evidence, judged against the semantics the *effective* configuration
gives the plan (`effective_plan`: REMAP_SIGTERM, worker_soft_shutdown_timeout
from the profile too), and heads the outcome by lab.verdict.HEADLINE_ORDER:
a traceback first, then loss, duplicate, hang, never-completed, other
deviations, timing.
"""

from __future__ import annotations

from typing import Any

from lab.observers.exit import judge_start_failure
from lab.scenarios.findings import crash_findings
from lab.verdict import Finding, Outcome, Verdict

LONG_S = 6.0          # each running task
SHORT_S = 0.3         # each prefetched task
PREFETCH = 4          # short tasks sent once the long ones run
SIGNAL_AFTER_S = 1.0  # first signal, after the first long task started
GAP_S = 1.0           # between the two signals of a two-signal plan
SOFT_TIMEOUT_S = 8.0  # > what is left of a running task at the signal
COLD_MAX_S = 4.0      # "at once": exit within this after the cold signal
WARM_SLACK_S = 10.0   # warm: exit within what is left of the running tasks + this

PLANS: dict[str, dict[str, Any]] = {
    "term": {"signals": ["SIGTERM"], "semantics": "warm"},
    # SIGINT's warm shutdown exits EX_FAILURE (1) by design: celery/apps/worker.py
    # install_worker_int_handler(..., exitcode=EX_FAILURE), every 5.x release
    "int": {"signals": ["SIGINT"], "semantics": "warm", "exit_code": 1},
    "quit": {"signals": ["SIGQUIT"], "semantics": "cold"},
    "term-term": {"signals": ["SIGTERM", "SIGTERM"], "semantics": "warm"},
    "term-quit": {"signals": ["SIGTERM", "SIGQUIT"], "semantics": "cold", "cold_index": 1},
    "remap-term": {"signals": ["SIGTERM"], "semantics": "cold", "remap": True},
    "soft-quit": {"signals": ["SIGQUIT"], "semantics": "soft", "soft": True},
}
PLAN_TEXT = {
    "term": "SIGTERM: warm shutdown",
    "int": "SIGINT once: warm shutdown (exit 1, EX_FAILURE, by design)",
    "quit": "SIGQUIT: cold shutdown",
    "term-term": "SIGTERM twice (1 s apart): the second is ignored, warm shutdown",
    "term-quit": "SIGTERM, then SIGQUIT 1 s later: warm escalated to cold",
    "remap-term": "SIGTERM with REMAP_SIGTERM=SIGQUIT: cold shutdown",
    "soft-quit": f"SIGQUIT with worker_soft_shutdown_timeout={SOFT_TIMEOUT_S:g}: soft, then cold",
}


def ledger(events: list[dict], sent: dict[str, str], signal_monos: list[float],
           drain_mono: float | None, parked_ids: list[str] | None = None) -> dict[str, Any]:
    """Per task key: received / started / ended / failed by the first worker and by the drain
    worker, and whether its message was left in the broker's unacked store (`parked_ids`:
    task ids read from Redis' unacked hash after the first worker exited; None: not known)."""
    def phase(mono: float) -> str:
        return "drain" if drain_mono is not None and mono >= drain_mono else "w1"

    keys: dict[str, dict[str, Any]] = {}
    for task_id, key in sent.items():
        keys[key] = {"kind": "long" if key.startswith("run-") else "short", "task_id": task_id,
                     "received": None, "w1_starts": [], "w1_ends": [], "drain_starts": [],
                     "drain_ends": [], "redelivered": False, "failures": [],
                     "parked": parked_ids is not None and task_id in parked_ids}
    for event in events:
        kind, mono = event.get("event"), event.get("mono", 0.0)
        key = event.get("key") or sent.get(event.get("task_id") or "")
        if key not in keys:
            continue
        row = keys[key]
        if kind == "task_received" and phase(mono) == "w1" and row["received"] is None:
            row["received"] = mono
        elif kind in ("exec_start", "exec_end"):
            where = phase(mono)
            row[f"{where}_{'starts' if kind == 'exec_start' else 'ends'}"].append(mono)
            row["redelivered"] = row["redelivered"] or bool(event.get("redelivered"))
        elif kind in ("task_failure", "task_revoked"):
            row["failures"].append(f"{phase(mono)}:{kind}:{event.get('exception') or event.get('signum') or ''}"[:200])
    return {"keys": keys, "signal_monos": signal_monos, "drain_mono": drain_mono,
            "parked_known": parked_ids is not None}


def _fmt(keys: list[str]) -> str:
    return ", ".join(sorted(keys)) or "-"


BUCKETS = ("running", "prefetched", "queued", "started_after", "completed", "cut", "failed",
           "requeued", "parked", "not_drained", "lost", "duplicates")


def classify_tasks(led: dict[str, Any]) -> dict[str, list[str]]:
    """Buckets of task keys. `lost` only when a drain worker ran: ended nowhere, no failure
    recorded, not parked in the broker's unacked store, not redelivered, and not still in the
    broker when the drain's bound ran out (`not_drained`: led["left_in_broker"], lab.observers.drain)."""
    keys, s0 = led["keys"], (led["signal_monos"] or [float("inf")])[0]
    drained = led.get("drain_mono") is not None
    left = set(led.get("left_in_broker") or [])
    out: dict[str, list[str]] = {n: [] for n in BUCKETS}
    for key, row in keys.items():
        before = [m for m in row["w1_starts"] if m < s0]
        ended_before = [m for m in row["w1_ends"] if m < s0]
        failed = [f for f in row["failures"] if f.startswith("w1:task_failure")]
        if before and not ended_before:
            out["running"].append(key)
            (out["completed"] if row["w1_ends"] else out["cut"]).append(key)
        elif not before and row["received"] is not None and row["received"] < s0:
            out["prefetched"].append(key)
        elif not before:
            out["queued"].append(key)
        if any(m >= s0 for m in row["w1_starts"]):
            out["started_after"].append(key)
        if failed and not row["w1_ends"]:
            out["failed"].append(key)
        if row["drain_starts"]:
            out["requeued"].append(key)
        if row.get("parked"):
            out["parked"].append(key)
        ended = row["w1_ends"] or row["drain_ends"]
        if drained and not ended and key in left:
            out["not_drained"].append(key)
        elif drained and not ended and not failed and not row.get("parked"):
            out["lost"].append(key)
        if len(row["w1_ends"]) + len(row["drain_ends"]) > 1:
            out["duplicates"].append(key)
    return out


def effective_plan(obs: dict[str, Any]) -> dict[str, Any]:
    """The semantics the worker's *effective* configuration gives the plan's signals.

    Reads the environment and settings the worker ran with (obs["effective"]:
    REMAP_SIGTERM, worker_soft_shutdown_timeout; older observations: the
    plan's own flags and the profile's settings), never the plan's name alone.
    SIGTERM is warm unless REMAP_SIGTERM=SIGQUIT makes it cold; SIGQUIT is
    cold; a cold shutdown with worker_soft_shutdown_timeout > 0 is a soft
    shutdown (celery/worker/request.py and celery/apps/worker.py, 5.5+).
    Returns {"semantics", "cold_index" (None for warm), "soft_timeout_s", "remap"}.
    """
    plan = PLANS[obs["plan"]]
    eff = obs.get("effective") or {}
    settings = obs.get("settings") or {}
    remap = eff.get("REMAP_SIGTERM", "SIGQUIT" if plan.get("remap") else "") == "SIGQUIT"
    soft = eff.get("worker_soft_shutdown_timeout")
    if soft is None:
        soft = settings.get("worker_soft_shutdown_timeout", SOFT_TIMEOUT_S if plan.get("soft") else 0)
    soft = float(soft or 0)
    cold_index = next((i for i, name in enumerate(plan["signals"])
                       if name == "SIGQUIT" or (name == "SIGTERM" and remap)), None)
    semantics = "warm" if cold_index is None else ("soft" if soft > 0 else "cold")
    return {"semantics": semantics, "cold_index": cold_index, "soft_timeout_s": soft, "remap": remap}


def judge(obs: dict[str, Any]) -> Outcome:
    """Every deviation from the documented semantics as a Finding; headline by lab.verdict's rule."""
    if not obs.get("ready"):
        return judge_start_failure(obs)
    eff = effective_plan(obs)
    semantics = eff["semantics"]
    led = obs.get("events") or {"keys": {}, "signal_monos": obs.get("signal_monos", [])}
    monos = obs.get("signal_monos") or []
    tasks = classify_tasks(led)
    keys = led.get("keys", {})
    acks_late = bool((obs.get("settings") or {}).get("task_acks_late"))
    findings: list[Finding] = []

    def deviate(code: str, verdict: Verdict, text: str, evidence: str = "", crash: bool = False) -> None:
        findings.append(Finding(verdict, code, text, {"evidence": evidence} if evidence else {}, crash))

    exit_s = obs.get("exit_s")
    cold_index = eff["cold_index"]
    cold_mono = monos[cold_index] if cold_index is not None and len(monos) > cold_index else None
    first = monos[0] if monos else None
    lines = obs.get("shutdown_lines") or []
    log = "\n".join(lines)
    findings.extend(crash_findings(obs))
    if obs.get("exit_code") is None:
        deviate("shutdown-hang", Verdict.HANG,
                f"no exit within the bound after {' then '.join(obs.get('signals_sent') or [])}",
                obs.get("log_tail", "")[-1500:])
    elif obs.get("exit_signal"):
        deviate(f"master-killed:{obs['exit_signal']}", Verdict.BUG, f"the master died of {obs['exit_signal']}")
    if tasks["started_after"]:
        delays = [f"{k} +{min(m for m in keys[k]['w1_starts'] if m >= first) - first:.1f}s"
                  for k in tasks["started_after"]]
        deviate("started-after-signal", Verdict.BUG,
                f"{len(delays)} task(s) started after the first signal: {', '.join(sorted(delays))}")
    if tasks["duplicates"]:
        deviate("duplicate-execution", Verdict.DUPLICATE,
                f"task(s) completed more than once: {_fmt(tasks['duplicates'])}")
    never_acked = set(tasks["prefetched"]) | set(tasks["queued"])
    if acks_late:
        never_acked |= set(tasks["cut"])
    lost_unacked = sorted(never_acked & set(tasks["lost"]))
    if lost_unacked:
        deviate("unacked-task-lost", Verdict.LOST,
                f"task(s) never acknowledged were neither redelivered within the {obs.get('drain_s', 0):.0f}s "
                f"drain nor left in the broker's unacked store: {_fmt(lost_unacked)}",
                "acks_late" if acks_late else "early ack (prefetched tasks are unacknowledged)")
    parked = sorted(never_acked & set(tasks["parked"]))
    if parked:
        deviate("unacked-task-parked", Verdict.INCOMPLETE,
                f"task(s) never acknowledged did not run within the {obs.get('drain_s', 0):.0f}s drain: the "
                f"exited worker left them in Redis' unacked hash: {_fmt(parked)} (prediction, not observed: "
                f"restored once the visibility timeout expires; broker_transport_options "
                f"visibility_timeout, 1 h by default)")
    failed_unacked = sorted(never_acked & set(tasks["failed"]))
    if failed_unacked:
        deviate("unacked-task-failed", Verdict.BUG,
                f"task(s) never acknowledged were failed by the shutdown instead of requeued: "
                f"{_fmt(failed_unacked)}",
                "; ".join(f for k in failed_unacked for f in keys[k]["failures"])[:1000])
    if led.get("drain_mono") is None and obs.get("exit_code") is not None:
        deviate("drain-not-run", Verdict.BUG, "no drain worker ran: what was requeued is unknown")
    if semantics == "warm":
        _judge_warm(obs, tasks, acks_late, exit_s, lines, log, deviate)
    elif cold_mono is not None:
        _judge_cold_or_soft(obs, eff, tasks, keys, cold_mono, first, exit_s, deviate)
    if obs.get("orphans"):
        deviate("orphaned-children", Verdict.BUG,
                f"{len(obs['orphans'])} process(es) outlived the master", repr(obs["orphans"])[:1000])
    if obs.get("drain_ready") is False:
        deviate("drain-not-ready", Verdict.BUG, "the drain worker did not become ready: requeue unknown")

    ended_after = [m for k in tasks["running"] for m in keys[k]["w1_ends"]]
    what = semantics + (f" ({eff['soft_timeout_s']:g}s)" if semantics == "soft" else "")
    metrics: dict[str, Any] = {
        "exit_code": obs.get("exit_code"), "exit_s": exit_s, "semantics": semantics,
        "soft_timeout_s": eff["soft_timeout_s"] or None, "remap_sigterm": eff["remap"],
        **{f"n_{name}": len(value) for name, value in tasks.items()},
        "shutdown_line": next((l for l in reversed(lines) if "shutdown" in l.lower()), None),
    }
    if ended_after and exit_s is not None and first is not None:
        metrics["exit_after_last_task_s"] = round(exit_s - (max(ended_after) - first), 2)
    evidence = {"plan": PLAN_TEXT[obs["plan"]], "effective": f"{what} shutdown: REMAP_SIGTERM="
                f"{'SIGQUIT' if eff['remap'] else 'unset'}, worker_soft_shutdown_timeout="
                f"{eff['soft_timeout_s']:g}s", "shutdown_lines": log, "log_tail": obs.get("log_tail", ""),
                "tasks": "; ".join(f"{name}: {_fmt(value)}" for name, value in tasks.items()),
                "deviations": "\n".join(f"[{f.verdict.value}] {f.signature}: {f.summary}" for f in findings)}
    if not findings:
        metrics["key_figure"] = f"exit {obs.get('exit_code')} in {exit_s:.1f}s"
        cut = set(tasks["cut"])
        fates = [f"{len(cut & set(tasks[b]))} {b}" for b in ("requeued", "failed", "lost") if cut & set(tasks[b])]
        done = (f"{len(tasks['completed'])} of {len(tasks['running'])} running finished"
                + (f", {len(cut)} stopped ({', '.join(fates) or 'not redelivered'}"
                   + ("; early ack: as documented)" if cut and not acks_late else ")") if cut else ""))
        return Outcome.of([], metrics, evidence, passed=(
            f"{what} shutdown as documented: {done}, {len(tasks['prefetched'])} prefetched requeued, "
            f"exit {obs.get('exit_code')} in {exit_s:.1f}s"))
    metrics["key_figure"] = f"{len(findings)} deviation(s)"
    metrics["deviations"] = [f.signature for f in findings]
    outcome = Outcome.of(findings, metrics, evidence)
    outcome.summary = f"{what} ({obs['plan']}): {outcome.summary}"[:900]
    return outcome


def _judge_warm(obs, tasks, acks_late, exit_s, lines, log, deviate) -> None:
    """Warm: running tasks finish, nothing new starts, exit 0, no cold line."""
    if tasks["cut"]:
        lost_cut = sorted(set(tasks["cut"]) & set(tasks["lost"]))
        deviate("warm-cut-running-task", Verdict.LOST if lost_cut and not acks_late else Verdict.BUG,
                f"warm shutdown did not let running task(s) finish: {_fmt(tasks['cut'])}"
                + (f" (lost: {_fmt(lost_cut)})" if lost_cut else " (redelivered)"))
    expected = PLANS[obs["plan"]].get("exit_code", 0)
    if obs.get("exit_code") not in (None, expected) and not obs.get("exit_signal"):
        deviate(f"warm-exit-code:{obs['exit_code']}", Verdict.BUG,
                f"warm shutdown ({obs['plan']}) exited {obs['exit_code']}, not {expected}", log)
    if exit_s is not None and exit_s > LONG_S - SIGNAL_AFTER_S + WARM_SLACK_S:
        deviate("warm-slow-exit", Verdict.STALL, f"warm shutdown took {exit_s:.1f}s for tasks "
                f"with ~{LONG_S - SIGNAL_AFTER_S:.0f}s left")
    if any("Cold shutdown" in l for l in lines):
        deviate("warm-plan-cold-line", Verdict.BUG, "a warm plan printed a cold shutdown line", log)


def _judge_cold_or_soft(obs, eff, tasks, keys, cold_mono, first, exit_s, deviate) -> None:
    """Cold: stop at once. Soft: running tasks get up to the timeout, then cold.

    A running task with more time left than the soft timeout is expected to be
    cut (and, with acks_late, requeued); one with less is expected to finish;
    the exit comes within the timeout plus COLD_MAX_S of the signal.
    """
    exit_from_cold = (exit_s + first - cold_mono) if exit_s is not None else None
    signal_name = PLANS[obs["plan"]]["signals"][eff["cold_index"]]
    finished = [k for k in tasks["running"] if any(m >= cold_mono for m in keys[k]["w1_ends"])]
    left = {k: max(keys[k]["w1_starts"]) + LONG_S - cold_mono for k in tasks["running"] if keys[k]["w1_starts"]}
    if eff["semantics"] == "cold":
        if finished:
            deviate("cold-waited-for-running-tasks", Verdict.BUG,
                    f"cold shutdown let running task(s) finish instead of stopping at once: {_fmt(finished)}")
        if exit_from_cold is not None and exit_from_cold > COLD_MAX_S:
            deviate("cold-slow-exit", Verdict.STALL,
                    f"cold shutdown took {exit_from_cold:.1f}s after {signal_name} (at once: under {COLD_MAX_S:g}s)")
        return
    timeout = eff["soft_timeout_s"]
    should_finish = sorted(k for k, rest in left.items() if rest + 1.0 <= timeout)
    should_cut = sorted(k for k, rest in left.items() if rest - 1.0 >= timeout)
    cut_early = sorted(set(should_finish) & set(tasks["cut"]))
    if cut_early:
        deviate("soft-cut-running-task", Verdict.BUG,
                f"soft shutdown ({timeout:g}s) did not let running task(s) with less time left finish: "
                f"{_fmt(cut_early)}")
    waited = sorted(set(should_cut) & set(finished))
    if waited:
        deviate("soft-waited-past-timeout", Verdict.BUG,
                f"soft shutdown ({timeout:g}s) let running task(s) with more time left run to the end: "
                f"{_fmt(waited)}")
    # Celery sleeps the whole timeout once any request was active at the signal, however early the
    # running tasks end (celery/worker/worker.py wait_for_soft_shutdown, 5.5-5.7), then shuts down cold
    bound = timeout + COLD_MAX_S
    if exit_from_cold is not None and exit_from_cold > bound:
        deviate("soft-slow-exit", Verdict.STALL,
                f"soft shutdown took {exit_from_cold:.1f}s after {signal_name} (timeout {timeout:g}s; "
                f"bound {bound:.1f}s)")
