"""Fault plans as data: what is done to a worker, and when.

Contract: a fault is a value (an enum member or a frozen dataclass), never a
side effect at import; `apply_eviction` is the one place an eviction is
carried out, so every scenario evicts the same way and records the same
facts. Times are scaled-down stand-ins for production values and every plan
records both (e.g. a 60 s terminationGracePeriodSeconds run as 4 s).
"""

from __future__ import annotations

import enum
import signal
import time
from dataclasses import asdict, dataclass
from typing import Callable

from lab.worker import WorkerController


class Fault(str, enum.Enum):
    SIGTERM_MASTER = "sigterm-master"
    SIGQUIT_MASTER = "sigquit-master"
    SIGKILL_GROUP = "sigkill-group"
    SIGKILL_CHILD = "sigkill-child"
    EVICTION = "eviction"  # SIGTERM, grace, SIGKILL to the whole group


@dataclass(frozen=True)
class EvictionPlan:
    grace_s: float = 4.0                  # what the lab waits
    production_grace_s: float = 60.0      # what it stands for (terminationGracePeriodSeconds)

    def to_dict(self) -> dict:
        return {**asdict(self), "scale": round(self.grace_s / self.production_grace_s, 4)}


def apply_eviction(worker: WorkerController, plan: EvictionPlan,
                   on_sigterm: Callable[[], object] | None = None) -> dict:
    """SIGTERM the master, wait the grace, SIGKILL the group if anything is left.

    `on_sigterm` runs right after the SIGTERM (a ReplicaSet starts the
    replacement pod as soon as the old one is terminating).

    Returns what happened: whether the master exited by itself within the
    grace, how, and the monotonic times of SIGTERM and SIGKILL.
    """
    term_at = time.monotonic()
    worker.send(signal.SIGTERM)
    if on_sigterm is not None:
        on_sigterm()
    info = worker.wait_exit(max(0.0, plan.grace_s - (time.monotonic() - term_at)))
    leftovers = worker.survivors(include_master=True)
    kill_at = None
    if not info.exited or leftovers:
        kill_at = time.monotonic()
        worker.send(signal.SIGKILL, target="group")
        for proc in leftovers:  # children that left the group, if any
            try:
                proc.kill()
            except Exception:
                pass
        if not info.exited:
            info = worker.wait_exit(10.0)
    how = (f"exited by itself: {info.describe()} after SIGTERM" if kill_at is None else
           f"SIGKILLed {kill_at - term_at:.1f}s after SIGTERM (grace {plan.grace_s:g}s); "
           f"master {info.describe().split(' after ')[0]}")
    return {"sigterm_mono": term_at, "sigkill_mono": kill_at,
            "exited_in_grace": kill_at is None or (info.exited and info.elapsed_s <= plan.grace_s
                                                   and not leftovers),
            "old_exit": how, "old_exit_code": info.returncode,
            "leftovers_at_grace": len(leftovers), "plan": plan.to_dict()}
