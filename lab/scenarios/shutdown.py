"""shutdown: signal plans against a busy worker, judged against the documented semantics.

Contract: the mode is a signal plan (PLANS). Workload: as many long tasks as
the pool runs at once (LONG_S each), then PREFETCH short ones the worker
receives but cannot start yet; the plan's signals go to the master
SIGNAL_AFTER_S after the long tasks started (a second signal GAP_S later).
After the worker exits, a drain worker on the same queue (lab.observers.drain:
without mingle, killed once every task ended, warm-stopped when its bound
runs out) shows what went back to the broker. Observations: exit code, warm/cold/soft lines,
time to exit, per task key where it started / ended (lab.scenarios.
shutdown_semantics.ledger), orphans, tracebacks. Checker
(shutdown_semantics.judge): every deviation from the documented semantics
(docs/userguide/workers.rst "Worker Shutdown") is a finding with evidence:
  warm  (TERM, first INT, further TERMs): finish running tasks, start no new ones, exit 0;
  cold  (QUIT, TERM then QUIT, TERM with REMAP_SIGTERM=SIGQUIT): stop at once;
  soft  (QUIT with worker_soft_shutdown_timeout): give running tasks up to the timeout, then cold;
and under every plan: no prefetched (unacked) task lost, no task run twice,
no process left behind, no traceback. Every deviation is a Finding; the
headline follows lab.verdict.HEADLINE_ORDER (a traceback before the symptoms
it caused). The semantics come from the effective configuration: a profile's
REMAP_SIGTERM or worker_soft_shutdown_timeout changes them. REMAP_SIGTERM and soft shutdown are n/a where the installed
Celery lacks them (probed, never by version).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from lab.diagnose import DEFAULT_SIGNALS_SHIM
from lab.journal import select
from lab.observers.broker_snapshot import parked_task_ids
from lab.observers.drain import drain
from lab.scenarios.base import CellContext, Scenario
from lab.observers.exit import SHUTDOWN_MARKERS
from lab.scenarios.shutdown_semantics import (GAP_S, LONG_S, PLANS, PREFETCH, SHORT_S,
                                              SIGNAL_AFTER_S, SOFT_TIMEOUT_S, judge, ledger)
from lab.verdict import Outcome
from lab.waits import hold

READY_TIMEOUT = 60.0
EXIT_BOUND = 45.0
DRAIN_S = 12.0


def soft_shutdown_supported() -> bool:
    from celery.app import defaults
    return "soft_shutdown_timeout" in defaults.NAMESPACES["worker"]


def remap_sigterm_supported() -> bool:
    from celery.apps import worker as apps_worker
    return hasattr(apps_worker, "REMAP_SIGTERM")


class Shutdown(Scenario):
    name = "shutdown"

    def applies(self, ctx: CellContext) -> str | None:
        plan = PLANS[ctx.cell.mode]
        if plan.get("soft") and not soft_shutdown_supported():
            return "this Celery has no worker_soft_shutdown_timeout setting (celery.app.defaults)"
        if plan.get("remap") and not remap_sigterm_supported():
            return "this Celery's worker does not read REMAP_SIGTERM (celery.apps.worker)"
        return None

    def run(self, ctx: CellContext) -> dict[str, Any]:
        plan = PLANS[ctx.cell.mode]
        env = dict(ctx.worker_env)
        if plan.get("remap"):
            env["REMAP_SIGTERM"] = "SIGQUIT"
        if plan.get("soft"):
            env["LAB_SOFT_SHUTDOWN_TIMEOUT"] = str(SOFT_TIMEOUT_S)
        shim = [sys.executable, "-c", DEFAULT_SIGNALS_SHIM]  # default dispositions, as in a container
        worker = ctx.worker("worker", env=env, wrapper=shim).start()
        settings = ctx.profile.get("settings") or {}
        soft = settings.get("worker_soft_shutdown_timeout", env.get("LAB_SOFT_SHUTDOWN_TIMEOUT") or 0)
        obs: dict[str, Any] = {"plan": ctx.cell.mode, "pool": ctx.cell.pool,
                               "profile": ctx.cell.profile, "settings": settings,
                               "effective": {"REMAP_SIGTERM": env.get("REMAP_SIGTERM", ""),
                                             "worker_soft_shutdown_timeout": float(soft)},
                               "ready": worker.wait_ready(READY_TIMEOUT)}
        if not obs["ready"]:
            from lab.observers.exit import exit_observation
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        app = ctx.client()
        capacity = 1 if ctx.cell.pool == "solo" else ctx.cell.concurrency
        sent: dict[str, str] = {}
        for i in range(capacity):
            key = f"run-{i}"
            sent[app.send_task("lab.sleep", args=(LONG_S,), kwargs={"key": key}, queue=ctx.queue).id] = key
        started = ctx.wait_for(lambda ev: len(select(ev, "exec_start")) >= capacity and ev, 20.0)
        obs["long_started"] = len(select(started or ctx.events(), "exec_start"))
        for i in range(PREFETCH):
            key = f"pre-{i}"
            sent[app.send_task("lab.sleep", args=(SHORT_S,), kwargs={"key": key}, queue=ctx.queue).id] = key
        ctx.wait_for(lambda ev: len(select(ev, "task_received")) >= capacity + PREFETCH, 2.0)
        first_start = min((e["mono"] for e in select(ctx.events(), "exec_start")), default=time.monotonic())
        hold(max(0.0, first_start + SIGNAL_AFTER_S - time.monotonic()))
        signal_monos = []
        for index, sig_name in enumerate(plan["signals"]):
            if index:
                hold(GAP_S)
            if not worker.is_alive():
                break
            signal_monos.append(time.monotonic())
            worker.send(getattr(signal, sig_name))
        info = worker.wait_exit(EXIT_BOUND)
        exit_mono = time.monotonic() if info.exited else None
        hold(0.3)  # let orphaned children show
        orphans = worker.tree() if info.exited else []
        text = worker.log_text()
        from lab import signatures
        obs.update({
            "signal_monos": signal_monos, "signals_sent": plan["signals"][:len(signal_monos)],
            "exit_code": info.returncode, "exit_signal": info.signal_name, "exit_desc": info.describe(),
            "exit_s": (round(worker.faults[-1]["mono"] - signal_monos[0], 3)
                       if info.exited and signal_monos else None),
            "orphans": orphans, "master_pid": worker.pid,
            "shutdown_lines": [l.strip() for l in text.splitlines() if any(m in l for m in SHUTDOWN_MARKERS)
                               or "Soft Shutdown" in l or "Restoring" in l][-8:],
            "log_tail": "\n".join(text.splitlines()[-30:]),
            "loud_lines": signatures.loud_lines(text)[-12:],
            "signatures": [m.to_dict() for m in signatures.classify(text)],
        })
        if exit_mono is None:  # still running: nothing to drain yet; teardown kills it
            obs["events"] = ledger(ctx.events(), sent, signal_monos, drain_mono=None)
            return obs
        if orphans:  # a drain worker must not compete with survivors (already listed above)
            worker.teardown()
        parked = parked_task_ids(ctx.worker_env.get("LAB_BROKER_URL", ""))
        obs["parked_task_ids"] = parked
        drained = drain(ctx, set(sent.values()), DRAIN_S, wrapper=shim, task_ids=sent)
        obs.update({k: drained[k] for k in ("drain_ready", "drain_stop", "drain_missing", "drain_left_in_broker")})
        obs["events"] = ledger(ctx.events(), sent, signal_monos, drain_mono=drained["drain_mono"], parked_ids=parked)
        obs["events"]["left_in_broker"] = drained["drain_left_in_broker"]
        obs["drain_s"] = DRAIN_S
        return obs

    def judge(self, obs: dict[str, Any]) -> Outcome:
        return judge(obs)


SCENARIO = Shutdown()
