"""start-limits: start-up under RLIMIT_NOFILE high or low, in the foreground or --detach'ed.

Contract: the mode is `<limit>[+detach]`, limit a lab.faults.resources.Limit
(`nofile-high`: as high as the host allows; `nofile-low`: resources.NOFILE_LOW).
One attempt starts two workers one after the other, the same way: first
under the baseline (resources.baseline(): the usual 1024), then under the
mode's limit (`prlimit --nofile=N:N` both). With `+detach` the worker runs `--detach
--logfile --pidfile` (celery/bin/worker.py, celery/platforms.py: the
daemon closes every descriptor below the limit). Observed per start:
  ready_s        Popen to the worker's worker_ready event (by LAB_WORKER_ID,
                 whatever pid the daemon has), None if not ready in START_BOUND;
  daemonise_s    (+detach) Popen to the launcher's exit;
  nofile_seen    "Max open files" of the ready process (/proc/<pid>/limits);
  exit / log     the launcher's exit code, lines at WARNING+ (the detached
                 log file for +detach).
Checker `judge(obs)`, pure: ratios limited/baseline for ready_s and
daemonise_s are metrics; a ratio over SLOW_RATIO that also costs more than
SLOW_EXTRA_S is a `stall` (`slow-start:<limit>`, `slow-daemonise:<limit>`);
a limited start that never became ready is `failed-fast` when something at
WARNING+ said why (`start-refused:<limit>`), `silent-exit` when it ended
without a word (the launcher's exit 0 of a daemon that died counts),
`hang` when it neither became ready nor ended. A baseline that fails is
judged as any start failure (lab.observers.exit.judge_start_failure).
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import psutil

from lab import signatures
from lab.faults import resources
from lab.faults.resources import Limit
from lab.journal import select
from lab.scenarios.base import CellContext, Scenario
from lab.observers.exit import judge_start_failure
from lab.verdict import Finding, Outcome, Verdict
from lab.waits import hold, waiting

START_BOUND = 30.0
GONE_S = 1.0  # +detach: no process of the worker seen for this long = the daemon is gone
SLOW_RATIO = 3.0
SLOW_EXTRA_S = 1.0
MAX_OPEN = re.compile(r"^Max open files\s+(\d+)", re.M)


def parse_mode(mode: str) -> tuple[Limit, bool]:
    head, _, tail = mode.partition("+")
    if tail not in ("", "detach"):
        raise ValueError(f"mode {mode!r}: the suffix may only be +detach")
    return Limit(head), tail == "detach"


class StartLimits(Scenario):
    name = "start-limits"

    def applies(self, ctx: CellContext) -> str | None:
        parse_mode(ctx.cell.mode)
        return None

    def run(self, ctx: CellContext) -> dict[str, Any]:
        limit, detach = parse_mode(ctx.cell.mode)
        obs: dict[str, Any] = {"mode": ctx.cell.mode, "detach": detach, "limit": limit.value,
                               "nofile": resources.nofile(limit), "baseline_nofile": resources.baseline()}
        obs["baseline"] = self._start(ctx, "baseline", resources.baseline_wrapper(), detach)
        obs["limited"] = self._start(ctx, "limited", resources.wrapper(limit), detach)
        obs["ready"] = obs["baseline"]["ready_s"] is not None
        if not obs["ready"]:
            obs.update(obs["baseline"]["exit"])
        return obs

    @staticmethod
    def _start(ctx: CellContext, name: str, wrapper: list[str], detach: bool) -> dict[str, Any]:
        args = (["--detach", f"--logfile={ctx.workdir / (name + '-detached.log')}",
                 f"--pidfile={ctx.workdir / (name + '.pid')}"] if detach else [])
        worker = ctx.worker(name, wrapper=wrapper, extra_args=args).start()
        t0, out = worker.started_mono, {"ready_s": None, "daemonise_s": None}
        with waiting("observe"):  # start-to-ready (or the daemon's exit) is what this scenario measures
            ready = _watch_start(worker, detach, t0, out)
        if ready:
            out["ready_s"] = round(ready["mono"] - t0, 3)
            try:
                limits = open(f"/proc/{ready['pid']}/limits").read()
                found = MAX_OPEN.search(limits)
                out["nofile_seen"] = int(found.group(1)) if found else None
            except OSError:
                out["nofile_seen"] = None
        if detach and out["daemonise_s"] is None:
            info = worker.wait_exit(START_BOUND)
            out["daemonise_s"] = round(time.monotonic() - t0, 3) if info.exited else None
        text = worker.log_text()
        detached = ctx.workdir / f"{name}-detached.log"
        if detached.exists():
            text += "\n" + detached.read_text(errors="replace")
        code = worker.proc.poll()
        out["exit"] = {"exit_code": code, "exit_signal": signal.Signals(-code).name if code and code < 0 else None,
                       "exit_desc": f"exit {code}" if code is not None else "still running",
                       "log_tail": "\n".join(text.splitlines()[-25:]),
                       "loud_lines": signatures.loud_lines(text)[-10:],
                       "signatures": [m.to_dict() for m in signatures.classify(text)],
                       "daemon_alive": bool(worker.survivors(include_master=True))}
        _stop(worker, ready["pid"] if ready else None)
        return out

    def judge(self, obs: dict[str, Any]) -> Outcome:
        if not obs.get("ready"):
            return judge_start_failure(obs)
        base, lim = obs["baseline"], obs["limited"]
        findings: list[Finding] = []
        metrics: dict[str, Any] = {"mode": obs["mode"], "nofile": obs["nofile"],
                                   "baseline_nofile": obs["baseline_nofile"], "nofile_seen": lim.get("nofile_seen"),
                                   "baseline_ready_s": base["ready_s"], "ready_s": lim["ready_s"],
                                   "baseline_daemonise_s": base.get("daemonise_s"),
                                   "daemonise_s": lim.get("daemonise_s")}
        evidence = {"log_tail": lim["exit"]["log_tail"], "loud_lines": "\n".join(lim["exit"]["loud_lines"])}
        limit = obs["limit"]
        for what, key in (("start", "ready_s"), ("daemonise", "daemonise_s")):
            if base.get(key) and lim.get(key) is not None:
                ratio = round(lim[key] / base[key], 2)
                metrics[f"{what}_ratio"] = ratio
                if ratio > SLOW_RATIO and lim[key] - base[key] > SLOW_EXTRA_S:
                    findings.append(Finding(Verdict.STALL, f"slow-{what}:{limit}",
                                            f"{what} took {lim[key]:.1f}s under RLIMIT_NOFILE={obs['nofile']}, "
                                            f"{ratio:.1f}x the {base[key]:.1f}s under {obs['baseline_nofile']}"))
        if lim["ready_s"] is None:
            exit_ = lim["exit"]
            if exit_["exit_code"] is None or (exit_["daemon_alive"] and not obs["detach"]):
                findings.append(Finding(Verdict.HANG, f"start-hang:{limit}", f"neither ready nor exited within "
                                        f"{START_BOUND:.0f}s under RLIMIT_NOFILE={obs['nofile']}"))
            elif exit_["loud_lines"]:
                findings.append(Finding(Verdict.FAILED_FAST, f"start-refused:{limit}",
                                        f"no start under RLIMIT_NOFILE={obs['nofile']} ({exit_['exit_desc']}): "
                                        f"{exit_['loud_lines'][-1][:200]}"))
            else:
                findings.append(Finding(Verdict.SILENT_EXIT, f"silent-exit:{limit}",
                                        f"no start under RLIMIT_NOFILE={obs['nofile']} and nothing at WARNING+ "
                                        f"({exit_['exit_desc']}{', daemonised' if obs['detach'] else ''})"))
        metrics["key_figure"] = (f"start x{metrics['start_ratio']}" if "start_ratio" in metrics
                                 else findings[0].signature if findings else "")
        return Outcome.of(findings, metrics, evidence, passed=(
            f"ready in {lim['ready_s']}s under RLIMIT_NOFILE={obs['nofile']} vs {base['ready_s']}s under "
            f"{obs['baseline_nofile']} (x{metrics.get('start_ratio')})"
            + (f"; daemonised in {lim.get('daemonise_s')}s vs {base.get('daemonise_s')}s "
               f"(x{metrics.get('daemonise_ratio')})" if obs["detach"] else "")))


def _watch_start(worker, detach: bool, t0: float, out: dict[str, Any]) -> dict | None:
    """Poll up to START_BOUND s from t0 for the worker's worker_ready event (returned, or None);
    with `detach`, note in out["daemonise_s"] when the launcher exited."""
    ready, gone_since = None, None
    while time.monotonic() - t0 < START_BOUND:
        found = [e for e in select(worker.events(), "worker_ready") if e.get("worker_id") == worker.worker_id]
        if found:
            ready = found[0]
            break
        if not worker.is_alive():
            if detach and out["daemonise_s"] is None:
                out["daemonise_s"] = round(time.monotonic() - t0, 3)
            if not detach:
                break
            # the daemon forks twice: one scan can fall between a parent's exit and its child
            # showing, so it is gone only when no process of it is seen for GONE_S
            if worker.survivors(include_master=True):
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= GONE_S:
                break
        hold(0.05)
    return ready


def _stop(worker, daemon_pid: int | None) -> None:
    """SIGKILL the worker and its daemon (the pid that became ready when detached) and wait up
    to 5 s. The judge reads nothing after the start, so no warm shutdown is spent on it (issue
    15: stops no verdict reads); the next start begins with the previous one gone."""
    targets = [p for p in worker.survivors(include_master=True)]
    if daemon_pid:
        try:
            targets.append(psutil.Process(daemon_pid))
        except psutil.Error:
            pass
    for proc in targets:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(targets, timeout=5)


SCENARIO = StartLimits()
