"""Observations every scenario takes the same way, and the start-up checker.

Contract: `exit_observation(worker, bound)` waits for the master to exit
(bounded), then records exit code / signal, time to exit, processes of this
worker that outlived the master (orphans, listed before teardown kills
them), the log tail, the lines at WARNING+ and the signatures found in the
log. `judge_start_failure(obs)` turns "never reached ready" into
setup-failed (the worker could not import a module its configuration needs:
the scenario never ran), silent-exit (exit 0, or nothing at WARNING+ said
why), bug (it failed loudly with a signature) or hang (neither ready nor
exited).
"""

from __future__ import annotations

import re
from typing import Any

from lab import signatures
from lab.verdict import Outcome, Verdict
from lab.worker import WorkerController
from lab.waits import hold

READY_LINE = re.compile(r"\S+@\S+ ready\.")
SHUTDOWN_MARKERS = ("Warm shutdown", "Cold shutdown", "Soft shutdown", "worker: Hitting Ctrl+C")


def exit_observation(worker: WorkerController, bound: float) -> dict[str, Any]:
    info = worker.wait_exit(bound)
    hold(0.2)  # let orphaned children show in the process table
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


IMPORT_FAILURE = re.compile(r"^(ModuleNotFoundError: No module named '[^']+'"
                            r"|ImportError: cannot import name '[^']+' from '[^']+')", re.M)


def import_failure(text: str) -> str | None:
    """The final ModuleNotFoundError / "cannot import name" line of a start-up traceback, if any.

    Such an exit says the installed packages do not fit together (e.g. kombu
    5.7.0's Redis transport importing `packaging`, which celery 5.3.6 does not
    declare): the environment failed, not the worker's lifecycle. Hostile
    conditions (rlimits, no fork) fail with other errors (MemoryError,
    OSError), so they stay findings.
    """
    found = IMPORT_FAILURE.findall(text)
    return found[-1] if found else None


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
    missing = import_failure(obs.get("log_tail", "") + "\n" + "\n".join(obs.get("loud_lines", [])))
    if missing and obs["exit_code"] != 0:
        return Outcome(Verdict.SETUP_FAILED, f"the worker could not import what its configuration "
                       f"needs ({missing}): the scenario never ran", "setup:import", metrics, evidence)
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
