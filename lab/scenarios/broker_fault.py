"""broker-fault: the broker fails under a running worker; a liveness probe judges it (issue 10).

Contract. The cell gets a broker server of its own, started in the cell
process (lab.services.nemesis.provision: never the run's shared RabbitMQ or
PostgreSQL, never a server the lab did not start). The result backend sits
on that same server (profile `defaults`, where the server can hold the
cell's backend: Redis/Redis, PostgreSQL/PostgreSQL) or on the runner's
separate server that stays up (profile `backend-apart`, and whenever the
broker cannot be a backend, e.g. RabbitMQ). The mode is a FaultPlan
(lab.faults.broker): a fault at a moment — idle after ready, a 5 s task
running, a chord in flight. Run: start the worker, reach the moment, put a
persistent marker on a side queue, apply the fault, wait until the broker
answers again, PROBE_DELAY_S later publish PROBES fresh tasks, and watch up
to PROBE_BOUND_S for them, the in-flight work and the chord callback.
Observations (all relative to the broker's return, seconds): probe starts
and ends, time to first consume, in-flight executions, callbacks, whether
the marker survived, the worker's effective retry settings, the worker's
exit if it exited, and — when the probes did not complete — the catatonia
evidence (process tree, last log lines, inspect ping/active, its sockets to
the broker). Judge: lab.scenarios.broker_fault_judge.judge (pure).
"""

from __future__ import annotations

import json
import time
from typing import Any

from lab import signatures
from lab.faults.broker import FAULT_AFTER_START_S, IDLE_AFTER_READY_S, LONG_TASK_S, CHORD_SHORT_S
from lab.faults.broker import Moment, parse_mode
from lab.journal import select
from lab.scenarios import broker_observe as look
from lab.scenarios.base import CellContext, Scenario
from lab.scenarios.broker_fault_judge import PROBE_BOUND_S, PROBE_DELAY_S, PROBES, judge
from lab.scenarios.observe import READY_LINE
from lab.verdict import Outcome
from lab.waits import hold, waiting

READY_TIMEOUT = 60.0
SETTLE_S = 1.0  # after everything ended: a duplicate has a moment to show


def _error_lines(text: str) -> list[str]:
    return [l for l in text.splitlines() if "ERROR/" in l or "CRITICAL/" in l]


class BrokerFaultScenario(Scenario):
    name = "broker-fault"
    owns_broker = True  # lab.services.nemesis starts a server of the cell's own to stop and cut

    def not_for(self, cell) -> str | None:
        from lab.services.nemesis import unavailable_reason
        return unavailable_reason(cell.broker, parse_mode(cell.mode).fault)

    def _configure(self, ctx: CellContext, nemesis, plan) -> dict[str, Any]:
        apart = ctx.worker_env.get("LAB_BACKEND_PLACEMENT") == "apart"
        same = None if apart else nemesis.backend_url(ctx.cell.backend)
        env = ctx.worker_env
        env["LAB_BROKER_URL"] = nemesis.broker_url
        if same:
            env["LAB_RESULT_BACKEND"] = same
        extra = json.loads(env.get("LAB_CELERY_SETTINGS") or "{}")
        extra.update(plan.settings)
        if nemesis.transport_options:
            extra["broker_transport_options"] = {**extra.get("broker_transport_options", {}),
                                                 **nemesis.transport_options}
            if same:
                extra["result_backend_transport_options"] = dict(nemesis.transport_options)
        if extra:
            env["LAB_CELERY_SETTINGS"] = json.dumps(extra)
        why = ("profile backend-apart" if apart else
               f"{ctx.cell.broker} broker's server cannot hold a {ctx.cell.backend} result backend")
        return {"placement": "same-server" if same else "separate",
                "placement_reason": None if same else why,
                "backend_url": env.get("LAB_RESULT_BACKEND", "")}

    def run(self, ctx: CellContext) -> dict[str, Any]:
        from lab.services.nemesis import provision
        plan = parse_mode(ctx.cell.mode)
        nemesis = provision(ctx.cell.broker, plan.fault, ctx.workdir / "broker", ctx.spares_dir)
        ctx.cleanups.append(nemesis.close)
        ctx.fault_log = nemesis.log
        obs: dict[str, Any] = {"mode": ctx.cell.mode, "plan": plan.to_dict(), "pool": ctx.cell.pool,
                               "broker": ctx.cell.broker, "profile": ctx.cell.profile,
                               **self._configure(ctx, nemesis, plan), "server": nemesis.describe()}
        obs["retry_settings"] = look.effective_retry_settings(ctx.worker_env)
        # Celery's default flags: gossip, mingle and heartbeat all reconnect too (the public reports
        # of workers that stop consuming after a broker restart run with them on)
        worker = ctx.worker("worker", quiet_startup=False).start()
        obs["worker_flags"] = "Celery defaults (gossip, mingle, heartbeat on)"
        obs["ready"] = worker.wait_ready(READY_TIMEOUT)
        if not obs["ready"]:
            from lab.scenarios.observe import exit_observation
            obs.update(exit_observation(worker, bound=5.0))
            return obs
        inflight = self._reach_moment(ctx, plan.moment, obs)
        marker_queue = f"{ctx.queue}.marker"
        obs["marker_before"] = look.put_marker(ctx.worker_env, marker_queue)
        log_at_fault = len(worker.log_text())
        ctx.forget_results()  # a result collected while Redis is down would stall the nemesis 20 s
        with waiting("hold"):  # the fault itself (stop, down time, start) is the scenario's design
            fault = nemesis.apply(plan)
        back = fault["back_mono"]
        obs["fault"] = {k: (round(v - back, 3) if k.endswith("_mono") else v) for k, v in fault.items()}
        obs["marker_after"] = look.marker_count(ctx.worker_env, marker_queue)
        hold(max(0.0, back + PROBE_DELAY_S - time.monotonic()))
        probes = look.publish_probes(ctx.worker_env, ctx.queue, PROBES)
        obs["probe_publish"] = {"at": round(probes["publish_mono"] - back, 3),
                                "done": round(probes["published_mono"] - back, 3),
                                "errors": probes["errors"], "sent": len(probes["sent"])}
        probe_keys = set(probes["sent"].values())
        want = probe_keys | set(inflight.values())

        def finished(events):
            ended = {e.get("key") for e in select(events, "exec_end")}
            done = want <= ended and (plan.moment is not Moment.CHORD or select(events, "callback"))
            return done or not worker.is_alive()
        ctx.wait_for(finished, max(0.0, probes["publish_mono"] + PROBE_BOUND_S - time.monotonic()), 0.2)
        hold(SETTLE_S)
        obs["observed_until"] = round(time.monotonic() - back, 3)
        events = ctx.events()
        obs["executions"] = self._executions(events, back)
        obs["callbacks"] = [round(e["mono"] - back, 3) for e in select(events, "callback")]
        obs["callback_inputs"] = [e.get("received") for e in select(events, "callback")]
        obs["probe_keys"], obs["inflight_keys"] = sorted(probe_keys), sorted(inflight.values())
        obs["worker_alive"] = worker.is_alive()
        text = worker.log_text()
        after = text[log_at_fault:]
        obs["log_after_fault"] = {
            "lost_lines": [l for l in after.splitlines() if "Connection to broker lost" in l][-3:],
            "connected_lines": [l for l in after.splitlines() if "Connected to" in l][-3:],
            "cannot_connect": sum(1 for l in after.splitlines() if "Cannot connect" in l),
            "lost_count": after.count("Connection to broker lost"),
            "connected_count": sum(1 for l in after.splitlines() if "Connected to" in l),
            "error_lines": _error_lines(after)[-8:],
            "signatures": [m.to_dict() for m in signatures.classify(after)][:5]}
        obs["log_tail"] = "\n".join(text.splitlines()[-30:])
        obs["ready_lines"] = len(READY_LINE.findall(text))
        if not obs["worker_alive"]:
            info = worker.wait_exit(1.0)
            # when it exited: its last journal event (worker_shutdown...), else when the lab saw it gone
            last = max((e["mono"] for e in events if e.get("pid") == worker.pid and e.get("event") in (
                "worker_shutting_down", "worker_shutdown")), default=worker.faults[-1]["mono"])
            obs["exit"] = {"exit_code": info.returncode, "exit_signal": info.signal_name,
                           "exit_desc": (f"killed by {info.signal_name}" if info.signal_name
                                         else f"exit {info.returncode}"),
                           "after_back_s": round(last - back, 3)}
        ended_probes = {k for k in probe_keys if obs["executions"].get(k, {}).get("ends")}
        if obs["worker_alive"] and ended_probes != probe_keys:
            ports = [nemesis.service.port] + ([nemesis.replica.port] if nemesis.replica else [])
            obs["catatonia"] = {"tree": worker.tree(), "sockets_to_broker": look.broker_sockets(worker, ports),
                                "inspect": look.inspect_worker(ctx.worker_env, worker.hostname),
                                "last_log_lines": "\n".join(text.splitlines()[-15:])}
        return obs

    def _reach_moment(self, ctx: CellContext, moment: Moment, obs: dict[str, Any]) -> dict[str, str]:
        """Drive the worker to the moment; {task id: key} of the work in flight at the fault."""
        if moment is Moment.IDLE:
            hold(IDLE_AFTER_READY_S)
            return {}
        if moment is Moment.RUNNING:
            app = ctx.client()
            task_id = app.send_task("lab.sleep", args=(LONG_TASK_S,), kwargs={"key": "inflight-0"},
                                    queue=ctx.queue).id
            inflight, long_key = {task_id: "inflight-0"}, "inflight-0"
        else:
            from lab.scenarios.chord_workload import send_chord
            ids = send_chord(ctx, [CHORD_SHORT_S, CHORD_SHORT_S, LONG_TASK_S])
            inflight = {tid: f"member-{i}" for i, tid in enumerate(ids)}
            long_key = "member-2"
        started = ctx.wait_for(lambda ev: select(ev, "exec_start", key=long_key), 20.0)
        obs["inflight_started"] = bool(started)
        if started:
            hold(max(0.0, started[0]["mono"] + FAULT_AFTER_START_S - time.monotonic()))
        return inflight

    @staticmethod
    def _executions(events: list[dict], back: float) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in events:
            if e.get("event") not in ("exec_start", "exec_end") or not e.get("key"):
                continue
            row = out.setdefault(e["key"], {"starts": [], "ends": [], "redelivered": False, "pids": []})
            row["starts" if e["event"] == "exec_start" else "ends"].append(round(e["mono"] - back, 3))
            row["redelivered"] = row["redelivered"] or bool(e.get("redelivered"))
            if e["event"] == "exec_start":
                row["pids"].append(e.get("pid"))
        return out

    def judge(self, obs: dict[str, Any]) -> Outcome:
        return judge(obs)


SCENARIO = BrokerFaultScenario()
