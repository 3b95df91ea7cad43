"""Observations every scenario takes the same way, and the start-up checker.

Contract: `exit_observation(worker, bound)` waits for the master to exit
(bounded), then records exit code / signal, time to exit, processes of this
worker that outlived the master (orphans, listed before teardown kills
them), the log tail, the lines at WARNING+ and the signatures found in the
log. `judge_start_failure(obs)` turns "never reached ready" into silent-exit
(exit 0, or nothing at WARNING+ said why), bug (it failed loudly with a
signature) or hang (neither ready nor exited).
"""

from __future__ import annotations

import re
import time
from typing import Any

from lab import signatures
from lab.verdict import Outcome, Verdict
from lab.worker import WorkerController

READY_LINE = re.compile(r"\S+@\S+ ready\.")
SHUTDOWN_MARKERS = ("Warm shutdown", "Cold shutdown", "Soft shutdown", "worker: Hitting Ctrl+C")


def exit_observation(worker: WorkerController, bound: float) -> dict[str, Any]:
    info = worker.wait_exit(bound)
    time.sleep(0.2)  # let orphaned children show in the process table
    orphans = [] if not info.exited else worker.tree()
    text = worker.log_text()
    return {
        "exit_code": info.returncode, "exit_signal": info.signal_name,
        "exit_s": round(worker.faults[-1]["mono"] - _last_signal_mono(worker), 3) if info.exited else None,
        "exit_desc": info.describe(), "orphans": orphans,
        "log_tail": "\n".join(text.splitlines()[-25:]),
        "loud_lines": signatures.loud_lines(text)[-10:],
        "shutdown_lines": [l for l in text.splitlines() if any(m in l for m in SHUTDOWN_MARKERS)][-3:],
        "signatures": [m.to_dict() for m in signatures.classify(text)],
        "log_says_ready": bool(READY_LINE.search(text)),
        "journal_says_ready": any(e.get("event") == "worker_ready" and e.get("pid") == worker.pid
                                  for e in worker.events()),
    }


def _last_signal_mono(worker: WorkerController) -> float:
    signals = [f["mono"] for f in worker.faults if f["kind"] in ("signal", "kill")]
    return signals[-1] if signals else worker.started_mono


def judge_start_failure(obs: dict[str, Any]) -> Outcome:
    evidence = {"log_tail": obs.get("log_tail", ""), "loud_lines": "\n".join(obs.get("loud_lines", []))}
    metrics = {"exit_code": obs.get("exit_code")}
    if obs.get("log_says_ready") and not obs.get("journal_says_ready"):
        # the worker did start: our journal did not see it. A lab failure, not a finding.
        return Outcome(Verdict.ERROR, "the worker logged 'ready.' but the lab's journal recorded no "
                       "worker_ready: the observer is broken", "lab-error", metrics, evidence)
    if obs.get("exit_code") is None:
        return Outcome(Verdict.HANG, "neither ready nor exited within the start bound",
                       "start-hang", metrics, evidence)
    bugs = [m for m in obs.get("signatures", []) if m["severity"] == "bug"]
    if obs["exit_code"] == 0 or not obs.get("loud_lines"):
        return Outcome(Verdict.SILENT_EXIT, f"exited before ready ({obs.get('exit_desc')}) "
                       "without an error at WARNING or above", "silent-exit", metrics, evidence)
    if bugs:
        evidence["traceback"] = bugs[0]["excerpt"]
        return Outcome(Verdict.BUG, f"failed at start-up: {bugs[0]['title']}", bugs[0]["name"],
                       metrics, evidence)
    return Outcome(Verdict.BUG, f"failed at start-up ({obs.get('exit_desc')}): "
                   f"{obs['loud_lines'][-1][:160]}", "start-failure", metrics, evidence)
