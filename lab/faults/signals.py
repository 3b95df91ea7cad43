"""Fault family `signals`: a real signal to the master, the process group or one pool child.

Contract: `Signal` names what matrices and scenarios say; `deliver(worker,
fault)` carries it out through the worker controller (which records signal,
target and monotonic time in the worker's fault log) and returns the pid hit
(None when a child was asked for and none exists). `Fault` keeps the names
lab.faults had before the family split (issue 11).
"""

from __future__ import annotations

import enum
import signal

from lab.worker import WorkerController


class Signal(str, enum.Enum):
    SIGTERM_MASTER = "sigterm-master"
    SIGQUIT_MASTER = "sigquit-master"
    SIGINT_MASTER = "sigint-master"
    SIGKILL_GROUP = "sigkill-group"
    SIGKILL_CHILD = "sigkill-child"


class Fault(str, enum.Enum):
    """The names lab.faults exported before issue 11 (signals and eviction together)."""

    SIGTERM_MASTER = "sigterm-master"
    SIGQUIT_MASTER = "sigquit-master"
    SIGKILL_GROUP = "sigkill-group"
    SIGKILL_CHILD = "sigkill-child"
    EVICTION = "eviction"  # SIGTERM, grace, SIGKILL to the whole group


_PLAN = {Signal.SIGTERM_MASTER: (signal.SIGTERM, "master"), Signal.SIGQUIT_MASTER: (signal.SIGQUIT, "master"),
         Signal.SIGINT_MASTER: (signal.SIGINT, "master"), Signal.SIGKILL_GROUP: (signal.SIGKILL, "group")}


def deliver(worker: WorkerController, fault: Signal) -> int | None:
    """Send `fault`; the pid it went to (the master's for master/group)."""
    fault = Signal(fault)
    if fault == Signal.SIGKILL_CHILD:
        return worker.kill_child()
    sig, target = _PLAN[fault]
    worker.send(sig, target=target)
    return worker.pid
