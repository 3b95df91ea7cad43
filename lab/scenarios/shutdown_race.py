"""shutdown-race: shutdown signals racing pool repopulation (seeds 000, 003, 004).

Contract: one attempt is one real worker run with --max-tasks-per-child=1 and
a flood of instant tasks, so prefork children are replaced continuously
(on other pools the option does not apply: same flood, same signals, and the
outcome says so). The profile's signal plan (race_faults.signal_plan: TERM,
QUIT, TERM then QUIT, TERM with REMAP_SIGTERM=SIGQUIT) is delivered as the
mode says:
  random              by the driver at a seeded random 1-4 s after ready (the
                      seed's method);
  targeted[@point]    by the master to itself at a named point of
                      repopulation, reached through worker_before_create_process
                      (default point `up`: forked, sentinel not yet tracked);
  targeted+kill-child the same at `up`, after SIGKILLing the new child;
  slow-start          by the driver at 1-4 s, while children start slower than
                      worker_proc_alive_timeout (so the master kills them).
Later signals of a plan follow after a seeded 0.2-1 s. Checker, from exit
status, log, journal and process table, most specific first:
  bug   a failure in the log, every traceback named by its final exception
        (race_faults.chained_failures: the _sentinel_poll AttributeError in
        _untrack_child_process, the assertion in verify_process_alive,
        unrecoverable:<Type>@frame, unknown:<Type>@frame), 'Timed out waiting
        for UP message' unless slow-start provoked it, an exception Celery's
        signal handler raised at the injection point that the log never shows
        (swallowed:<Type>@frame), a pool process reaped before it was started,
        orphaned children, or a non-zero exit; every finding is kept in
        metrics["findings"], the most specific one names the attempt;
  hang  no exit within the shutdown bound;
  pass  clean shutdown.
n/a: targeted and slow-start on pools without children, targeted where
celery.signals lacks worker_before_create_process, slow-start where the
worker_proc_alive_timeout setting does not exist, or a targeted point never
reached in the bound while children churned.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from lab import catalog, signatures
from lab.scenarios.base import CellContext, Scenario
from lab.observers.exit import exit_observation, judge_start_failure
from lab.scenarios.race_faults import (RANDOM_WINDOW_S, SECOND_SIGNAL_DELAY_S, UP_TIMEOUT, JournalTail,
                                       Kind, Mode, chained_failures, race_matches, signal_plan, signum,
                                       wchan, worker_env)
from lab.verdict import Outcome, Verdict
from lab.waits import hold

READY_TIMEOUT = 60.0
TARGET_TIMEOUT = 20.0     # churn this long for the named point before calling it unreachable
SHUTDOWN_TIMEOUT = 20.0   # after the last signal
BATCH, LOW_WATER = 20, 30  # keep at least LOW_WATER tasks queued
SHUTDOWN_EXC = ("WorkerTerminate", "WorkerShutdown", "SystemExit", "KeyboardInterrupt")
CHAIN_ORDER = ("sentinel-poll-attributeerror", "verify-process-alive-assertion")  # then by log order
TRACEBACK_KINDS = ("unknown:", "unrecoverable:")


class ShutdownRace(Scenario):
    name = "shutdown-race"

    def __init__(self) -> None:
        self._cell_t0: dict[str, float] = {}

    def not_for(self, cell) -> str | None:
        if Mode.parse(cell.mode).kind != Kind.RANDOM and cell.pool not in catalog.POOLS_WITH_CHILDREN:
            return (f"{cell.mode} needs pool child processes; the {cell.pool} pool has none, "
                    "so pool repopulation never happens (mode random runs the same flood and signals here)")
        return None

    def applies(self, ctx: CellContext) -> str | None:
        mode = Mode.parse(ctx.cell.mode)
        if mode.kind == Kind.RANDOM:
            return None
        if mode.kind == Kind.TARGETED:
            import celery.signals
            if not hasattr(celery.signals, "worker_before_create_process"):
                return ("celery.signals has no worker_before_create_process: the named point of "
                        "repopulation cannot be reached through Celery's own hook")
        if mode.kind == Kind.SLOW_START:
            from celery.app.defaults import NAMESPACES
            if "proc_alive_timeout" not in NAMESPACES["worker"]:
                return "this Celery has no worker_proc_alive_timeout setting to start children slower than"
        return None

    # -- drive ---------------------------------------------------------------
    def run(self, ctx: CellContext) -> dict[str, Any]:
        t0 = time.monotonic()
        key = str(ctx.workdir.parent)  # the cell's directory: attempts run in order, in one process
        if ctx.attempt == 1 or key not in self._cell_t0:
            self._cell_t0[key] = t0
        cell_t0 = self._cell_t0[key]
        mode, plan, rng = Mode.parse(ctx.cell.mode), signal_plan(ctx.worker_env), ctx.rng
        skip = rng.randint(1, ctx.cell.concurrency)
        fire_at = rng.uniform(*RANDOM_WINDOW_S)
        delays = [round(rng.uniform(*SECOND_SIGNAL_DELAY_S), 3) for _ in plan["signals"][1:]]
        env = {**ctx.worker_env, **worker_env(mode, plan, skip)}
        env["LAB_APP_MODULES"] = ",".join(filter(None, (ctx.worker_env.get("LAB_APP_MODULES"),
                                                        "lab.app.race_hooks")))
        worker = ctx.worker("worker", env=env, extra_args=["--max-tasks-per-child=1"]).start()
        obs: dict[str, Any] = {
            "mode": ctx.cell.mode, "kind": mode.kind.value, "point": mode.point and mode.point.value,
            "faults": [f.value for f in mode.faults], "plan": plan, "pool": ctx.cell.pool,
            "concurrency": ctx.cell.concurrency, "seed": ctx.seed, "skip": skip,
            "children_apply": ctx.cell.pool in catalog.POOLS_WITH_CHILDREN,
            "ready": worker.wait_ready(READY_TIMEOUT)}
        obs["ready_s"] = round(time.monotonic() - worker.started_mono, 3)
        if not obs["ready"]:
            obs.update(exit_observation(worker, bound=5.0))
            return self._finish(obs, t0, cell_t0)
        tail, t_ready, sent = JournalTail(ctx.journal), time.monotonic(), []
        app = ctx.client()
        if mode.kind == Kind.TARGETED:
            reached = self._churn(ctx, app, worker, tail, lambda: tail.first("race_inject"),
                                  t_ready + TARGET_TIMEOUT)
            inject = tail.first("race_inject")
            obs["point_reached"] = bool(inject)
            if inject:
                sent.append({"signal": plan["signals"][0], "by": "master", "mono": inject["mono"]})
            else:  # never reached: the driver stops the worker itself
                worker.send(signum(plan["signals"][0]))
                sent.append({"signal": plan["signals"][0], "by": "driver", "mono": time.monotonic()})
        else:
            obs["fire_at_s"] = round(fire_at, 3)
            reached = self._churn(ctx, app, worker, tail, lambda: False, t_ready + fire_at)
            worker.send(signum(plan["signals"][0]))
            sent.append({"signal": plan["signals"][0], "by": "driver", "mono": time.monotonic()})
        for name, delay in zip(plan["signals"][1:], delays):
            hold(max(0.0, sent[-1]["mono"] + delay - time.monotonic()))
            if worker.is_alive():
                worker.send(signum(name))
                sent.append({"signal": name, "by": "driver", "mono": time.monotonic()})
        obs["worker_died_early"] = reached is None
        obs.update(exit_observation(worker, bound=SHUTDOWN_TIMEOUT))
        if obs["exit_code"] is None:  # what the hung master waits in, then Celery's SIGUSR1 stack dump
            obs["hang_wchan"] = wchan(worker.pid)
            size = len(worker.log_text())
            worker.send(signal.SIGUSR1)
            hold(1.5)
            obs["hang_dump"] = worker.log_text()[size:][-6000:]
            obs["hang_tree"] = worker.tree()
        exits = [f["mono"] for f in worker.faults if f["kind"] == "exit"]
        obs["exit_s"] = round(exits[-1] - sent[0]["mono"], 3) if exits else None
        obs["signals"] = [{"signal": s["signal"], "by": s["by"], "at_s": round(s["mono"] - t_ready, 3)}
                          for s in sent]
        tail.poll()
        self._journal_evidence(obs, tail, t_ready)
        text = worker.log_text()
        obs["race_signatures"] = race_matches(text)
        obs["failures"] = chained_failures(text)
        obs["up_timeouts"] = len(UP_TIMEOUT.findall(text))
        return self._finish(obs, t0, cell_t0)

    def _churn(self, ctx, app, worker, tail, until, deadline) -> bool | None:
        """Keep the queue topped up until `until()` or the deadline; None if the master died."""
        sent = 0
        while True:
            tail.poll()
            if until():
                return True
            if not worker.is_alive():
                return None
            if time.monotonic() >= deadline:
                return False
            if sent - tail.count("exec_start") < LOW_WATER:
                for i in range(BATCH):  # a key per task: one false failure or duplicate is counted
                    app.send_task("lab.churn", kwargs={"key": f"churn-{sent + i}"}, queue=ctx.queue)
                sent += BATCH
            hold(0.05)

    @staticmethod
    def _journal_evidence(obs: dict, tail: JournalTail, t_ready: float) -> None:
        ev = tail.events
        obs["children_started"] = sum(1 for e in ev if e["event"] == "child_init" and e["mono"] > t_ready)
        obs["tasks_done"] = sum(1 for e in ev if e["event"] == "exec_end")
        ends: dict[str, int] = {}
        for e in ev:
            if e["event"] == "exec_end":
                ends[e.get("key")] = ends.get(e.get("key"), 0) + 1
        obs["duplicate_keys"] = sorted(k for k, n in ends.items() if n > 1)[:50]
        obs["task_failures"] = [{"task_id": e.get("task_id"), "exception": (e.get("exception") or "")[:200]}
                                for e in ev if e["event"] == "task_failure"][:50]
        obs["slow_children"] = [e.get("sleep") for e in ev if e["event"] == "race_slow_child"]
        obs["point_missed"] = sum(1 for e in ev if e["event"] == "race_point_missed")
        inject = tail.first("race_inject")
        if inject:
            obs["injection"] = {k: inject.get(k) for k in ("point", "signal", "kill_child", "creation",
                                                          "thread", "in_pool", "forked", "index",
                                                          "pool_size", "sentinel_tracked", "stack")}
        raised = tail.first("race_inject_raised")
        if raised:
            exc_type, frame = signatures.traceback_key(raised.get("traceback", ""))
            obs["injection_raised"] = {"exception": raised.get("exception"), "type": exc_type,
                                       "frame": frame, "traceback": raised.get("traceback", "")}
        obs["injection_returned"] = bool(tail.first("race_inject_returned"))

    def _finish(self, obs: dict, t0: float, cell_t0: float) -> dict:
        now = time.monotonic()
        obs["attempt_s"], obs["cell_elapsed_s"] = round(now - t0, 3), round(now - cell_t0, 3)
        return obs

    # -- judge ---------------------------------------------------------------
    def judge(self, obs: dict[str, Any]) -> Outcome:
        metrics = {k: obs.get(k) for k in ("mode", "concurrency", "seed", "ready_s", "exit_s", "exit_code",
                                            "children_started", "tasks_done", "up_timeouts",
                                            "attempt_s", "cell_elapsed_s", "fire_at_s", "skip")}
        metrics["signal_plan"] = obs["plan"]["label"]
        # every churn task has its own key: a task failed (WorkerLostError) or run twice is counted
        metrics["tasks_failed"] = len(obs.get("task_failures") or [])
        metrics["tasks_duplicated"] = len(obs.get("duplicate_keys") or [])
        if not obs["ready"]:
            out = judge_start_failure(obs)
            out.metrics.update(metrics)
            return out
        evidence = {"log_tail": obs.get("log_tail", ""), "signals": repr(obs.get("signals")),
                    **({"hang_dump": obs["hang_dump"] or "(no stack dump from SIGUSR1)",
                        "hang_tree": repr(obs.get("hang_tree")), "hang_wchan": repr(obs.get("hang_wchan"))}
                       if obs.get("hang_dump") is not None else {}),
                    "injection": repr(obs.get("injection"))}
        how = self._how(obs)
        findings = self._findings(obs)
        if findings and findings[0][0] != "shutdown-hang":
            name, title, excerpt = findings[0]
            evidence["traceback"] = excerpt
            metrics["findings"] = [f[0] for f in findings]
            if len(findings) > 1:
                evidence["other_findings"] = ", ".join(f[0] for f in findings[1:])
            metrics["key_figure"] = name
            metrics["time_to_repro_s"] = evidence["time_to_repro_s"] = obs.get("cell_elapsed_s")
            return Outcome(Verdict.BUG, f"{title} ({obs.get('exit_desc')}; {how})", name, metrics, evidence)
        if obs.get("exit_code") is None:
            metrics["findings"] = [f[0] for f in findings]
            metrics["time_to_repro_s"] = evidence["time_to_repro_s"] = obs.get("cell_elapsed_s")
            return Outcome(Verdict.HANG, f"no exit within {SHUTDOWN_TIMEOUT:.0f}s of the last signal ({how})",
                           "shutdown-hang", metrics, evidence)
        if obs.get("worker_died_early"):
            return Outcome(Verdict.SILENT_EXIT, f"the master exited during the churn, before any signal "
                           f"({obs.get('exit_desc')}; {how})", "exited-before-signal", metrics, evidence)
        if obs.get("kind") == "targeted" and not obs.get("point_reached"):
            return Outcome(Verdict.NA, f"point {obs.get('point')!r} never reached in {TARGET_TIMEOUT:.0f}s "
                           f"({obs.get('children_started')} children started, {obs.get('point_missed')} "
                           "creations missed it); the driver stopped the worker", "point-not-reached",
                           metrics, evidence)
        metrics["key_figure"] = f"exit 0 in {obs['exit_s']:.1f}s"
        return Outcome(Verdict.PASS, f"clean shutdown: exit 0 in {obs['exit_s']:.1f}s; {how}",
                       None, metrics, evidence)

    @staticmethod
    def _findings(obs: dict) -> list[tuple[str, str, str]]:
        """(signature, title, excerpt) of every bug seen, most specific first."""
        slow, failures = obs.get("kind") == "slow-start", obs.get("failures")
        chains = [f for f in failures or [] if f["severity"] == "bug"]
        chains.sort(key=lambda f: CHAIN_ORDER.index(f["name"]) if f["name"] in CHAIN_ORDER else len(CHAIN_ORDER))
        out = [(f["name"], f"{f['header'] or f['type'] + ' traceback'} [{f['message']}]", f["excerpt"])
               for f in chains]
        # lab.signatures for what is not a traceback (all of it if the log held no traceback)
        lines = [m for m in obs.get("signatures", []) if m["severity"] == "bug"
                 and (not failures or not (m["name"] in CHAIN_ORDER or m["name"].startswith(TRACEBACK_KINDS)))
                 and not (slow and m["name"] == "timed-out-waiting-for-up")]
        out += [(m["name"], m["title"], m["excerpt"]) for m in lines if m["name"] not in {o[0] for o in out}]
        raised = obs.get("injection_raised")
        if raised and raised["type"] not in SHUTDOWN_EXC and not any(
                raised["type"] in name or raised["type"] in excerpt for name, _, excerpt in out):
            name = f"swallowed:{raised['type']}" + (f"@{raised['frame']}" if raised["frame"] else "")
            out.append((name, f"{raised['exception']} raised by Celery's signal handler at the injection "
                        "point, never logged", raised["traceback"]))
        out += [(m["name"], m["title"], m["excerpt"]) for m in obs.get("race_signatures", [])]
        if obs.get("orphans"):
            out.append(("orphaned-children", f"{len(obs['orphans'])} process(es) outlived the master",
                        repr(obs["orphans"])))
        if obs.get("exit_code") is None:
            out.append(("shutdown-hang", f"no exit within {SHUTDOWN_TIMEOUT:.0f}s of the last signal",
                        obs.get("hang_dump") or ""))
        if obs.get("exit_code") not in (None, 0):
            code = obs.get("exit_signal") or obs.get("exit_code")
            out.append((f"unclean-exit:{code}", f"shutdown ended with {obs.get('exit_desc')}",
                        "\n".join(obs.get("loud_lines", []))))
        return out

    @staticmethod
    def _how(obs: dict) -> str:
        signals = ", ".join(f"{s['signal']} by {s['by']} at +{s['at_s']:.2f}s" for s in obs.get("signals", []))
        parts = [f"{obs['mode']}; {obs['plan']['label']}: {signals or 'no signal'}"]
        if obs.get("children_apply"):
            parts.append(f"{obs.get('children_started')} children started under churn")
        else:
            parts.append(f"--max-tasks-per-child does not apply to the {obs['pool']} pool (no pool "
                         f"children): same flood and signals, {obs.get('tasks_done')} tasks done")
        if obs.get("injection"):
            inj = obs["injection"]
            parts.append(f"injected at {inj['point']} (in_pool={inj['in_pool']}, forked={inj['forked']}, "
                         f"sentinel_tracked={inj['sentinel_tracked']}, thread={inj['thread']})")
        if obs.get("kind") == "slow-start":
            parts.append(f"{obs.get('up_timeouts')} UP timeouts provoked")
        return "; ".join(parts)


SCENARIO = ShutdownRace()
