"""Watching one worker start, as `lab diagnose` does, plus what only the lab knows.

Contract: `watch_start(worker, bound, confirm)` observes a started worker
until confirmed ready, exited, or the bound: readiness from the log line or
the worker_ready event, confirmed by the process still running and no
shutdown journaled `confirm` seconds later; exit code or signal of the
process a supervisor would see; processes left behind; what a SIGTERM does
to it afterwards (`stop_after_ready` / `stop_after_hang`: noted, never
judged here); the journaled start-up hook, shutdown signals, and the inner
worker's status behind a pipe (INNER_STATUS). Observations only: the
verdict is the silent-exit scenario's (lab.diagnose.classify_start).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from lab import diagnose
from lab.journal import select
from lab.worker import WorkerController
from lab.waits import hold, waiting

INNER_STATUS = "inner-status"  # file in the workdir: the worker's own status behind a pipe


def _ready_event(events: list[dict]) -> dict | None:
    found = select(events, "worker_ready")
    return found[-1] if found else None


def shutdown_requested(events: list[dict]) -> bool:
    """A shutdown journaled since this worker process (last) initialised."""
    inits = select(events, "worker_init")
    since = inits[-1]["mono"] if inits else float("-inf")
    return any(e.get("mono", 0) >= since for e in events
               if e.get("event") in ("worker_shutting_down", "worker_shutdown"))


def _term_and_wait(worker: WorkerController, bound: float) -> str:
    """SIGTERM the worker's process group; wait for it and every process of this worker."""
    t0 = time.monotonic()
    worker.send(signal.SIGTERM, target="group")
    outer = worker.wait_exit(bound)
    left = worker.survivors(include_master=True)
    while left and time.monotonic() - t0 < bound:
        hold(0.1)
        left = worker.survivors(include_master=True)
    if left or not outer.exited:
        return (f"still running after {bound:.0f}s: {len(left)} worker process(es)"
                + (f" ({outer.describe()} for the command itself)" if outer.exited else ""))
    return f"stopped in {time.monotonic() - t0:.1f}s ({outer.describe()})"


def watch_start(worker: WorkerController, bound: float, confirm: float,
                pending_grace: float = diagnose.PENDING_GRACE_S, stop_ready: bool = True) -> dict[str, Any]:
    """Observe a started worker until confirmed ready, exited, or the bound.

    Ready: the ready event or line, then still running `confirm` s later. If a
    shutdown was requested since the process initialised (journaled), it gets
    `pending_grace` more seconds to take effect; still running after that, it is
    ready with `shutdown_ignored`. With `stop_ready` (lab diagnose) a ready worker
    is then stopped with SIGTERM and what that did is noted (`stop_after_ready`);
    a scenario whose judge never reads it passes False and leaves the worker to
    the teardown's SIGKILL (issue 15: a stop nobody reads costs ~1.5 s a cell).
    A hung start is always stopped and noted (`stop_after_hang`). Times in s.
    """
    with waiting("observe"):  # the start is what is observed here
        return _watch(worker, bound, confirm, pending_grace, stop_ready)


def _watch(worker: WorkerController, bound: float, confirm: float, pending_grace: float,
           stop_ready: bool) -> dict[str, Any]:
    t0 = worker.started_mono
    ready_at = None
    ready = False
    ready_source = None
    pending = False
    while True:
        now = time.monotonic()
        alive = worker.is_alive()
        events = worker.events()
        if ready_at is None:
            if _ready_event(events):
                ready_at, ready_source = now, "journal"
            elif diagnose.READY_LINE.search(worker.log_text()):
                ready_at, ready_source = now, "log"
        if ready_at is not None and alive and now - ready_at >= confirm:
            pending = shutdown_requested(events)
            if not pending or now - ready_at >= confirm + pending_grace:
                ready = True
                break
        if not alive or now - t0 >= bound + (pending_grace if pending else 0):
            break
        hold(0.1)
    elapsed = time.monotonic() - t0
    facts: dict[str, Any] = {"ready": ready, "ready_seen": ready_at is not None,
                             "shutdown_ignored": ready and pending,
                             "ready_source": ready_source, "bound_s": bound, "confirm_s": confirm,
                             "ready_s": round(ready_at - t0, 2) if ready_at else None,
                             "elapsed_s": round(elapsed, 2)}
    if ready or worker.is_alive():
        facts.update({"exit_code": None, "exit_signal": None, "leftovers": []})
        mtime = worker.log_path.stat().st_mtime if worker.log_path.exists() else None
        facts["last_output_age_s"] = (round(time.time() - mtime, 2)
                                      if mtime and worker.log_path.stat().st_size else None)
        text = worker.log_text()  # what the start produced, before the lab stops it
        # What a SIGTERM does now (an orchestrator's stop): noted, not judged here.
        if stop_ready or not ready:
            facts["stop_after_ready" if ready else "stop_after_hang"] = _term_and_wait(worker, 15.0 if ready else 5.0)
            facts["stop_tail"] = worker.log_text()[len(text):][-2000:]
    else:
        info = worker.wait_exit(1)
        facts.update({"exit_code": info.returncode, "exit_signal": info.signal_name})
        hold(0.3)  # let orphans show in the process table
        facts["leftovers"] = worker.tree()
        text = worker.log_text()
    facts.update(diagnose.analyze_output(text))
    events = worker.events()
    hooks = select(events, "startup_hook")
    facts["hook"] = hooks[0] if hooks else None
    facts["hook_returned"] = bool(select(events, "startup_hook_returned"))
    facts["shutting_down"] = [{k: e.get(k) for k in ("sig", "how", "exitcode")}
                              for e in select(events, "worker_shutting_down")]
    facts["worker_shutdown_event"] = bool(select(events, "worker_shutdown"))
    facts["journal_pids"] = sorted({e["pid"] for e in events if "pid" in e})[:20]
    facts["worker_inits"] = len(select(events, "worker_init"))
    inner = worker.workdir / INNER_STATUS
    facts["inner_status"] = inner.read_text().strip() if inner.exists() else None
    return facts
