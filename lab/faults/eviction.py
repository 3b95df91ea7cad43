"""Fault family `eviction`: a worker's pod or unit going away.

Contract: `Eviction` names the two ways:
  graceful     what Kubernetes does: SIGTERM to the master, a grace period,
               then SIGKILL to the whole process group (`apply_eviction`);
  master-kill  SIGKILL to the master alone, as `kill -9 <pid>` or a
               supervisor without group kill does (`kill_master_only`): pool
               children are not signalled and may live on.
Times are scaled-down stand-ins for production values and every plan
records both (e.g. a 60 s terminationGracePeriodSeconds run as 4 s).
"""

from __future__ import annotations

import enum
import signal
import time
from dataclasses import asdict, dataclass
from typing import Callable

from lab.worker import WorkerController
from lab.waits import hold


class Eviction(str, enum.Enum):
    GRACEFUL = "graceful"
    MASTER_KILL = "master-kill"


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


def describe_procs(procs) -> list[dict]:
    """pid, ppid, status and command line of each live process (psutil.Process)."""
    out = []
    for proc in procs:
        try:
            out.append({"pid": proc.pid, "ppid": proc.ppid(), "status": proc.status(),
                        "cmdline": " ".join(proc.cmdline())[:300]})
        except Exception:  # gone meanwhile
            continue
    return out


def kill_master_only(worker: WorkerController, settle_s: float = 1.0) -> dict:
    """SIGKILL the master and nothing else; after `settle_s` s, list what of it still runs.

    Returns {"kill_mono", "master_exit" (describe()), "left_running": [{pid, ppid, status,
    cmdline}]} — processes carrying this worker's LAB_WORKER_ID (pool children reparented to
    init or a subreaper). The caller decides how long to watch them and kills them at teardown.
    """
    kill_at = time.monotonic()
    worker.send(signal.SIGKILL)
    info = worker.wait_exit(10.0)
    hold(settle_s)
    return {"kill_mono": kill_at, "master_exit": info.describe(),
            "left_running": describe_procs(worker.survivors())}
