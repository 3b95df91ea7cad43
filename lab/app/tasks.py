"""The tasks the scenarios run, each writing its own execution ledger.

Contract: every execution writes `exec_start` and, if it returns, `exec_end`
(with task id, name and a `key` naming the unit of work), so lost and
duplicate work is counted from the journal without trusting the result
backend. The chord callback writes `callback` with exactly what it received.
"""

from __future__ import annotations

import os
import time

from lab.app.celery_app import app
from lab.journal import write_event


def _ledger(task, phase: str, key, **fields) -> None:
    write_event(f"exec_{phase}", task_id=task.request.id, task=task.name, key=key,
                retries=task.request.retries, redelivered=_redelivered(task), **fields)


def _redelivered(task) -> bool | None:
    info = getattr(task.request, "delivery_info", None) or {}
    return info.get("redelivered")


def _work(seconds: float) -> bool:
    """Sleep `seconds`; True if cut short by a finalize-on-shutdown flag."""
    if not os.environ.get("LAB_FINALIZE"):
        time.sleep(seconds)
        return False
    from lab.app.finalize import shutdown_requested
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if shutdown_requested():
            return True
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return False


@app.task(bind=True, name="lab.member")
def member(self, index: int, seconds: float = 0.0):
    """A chord header member: works `seconds`, then returns its index."""
    _ledger(self, "start", key=f"member-{index}", seconds=seconds)
    partial = _work(seconds)
    _ledger(self, "end", key=f"member-{index}", partial=partial)
    return index


@app.task(bind=True, name="lab.collect")
def collect(self, results):
    """A chord callback that records exactly what it received."""
    write_event("callback", task_id=self.request.id, task=self.name, received=list(results))
    return sorted(results)


@app.task(bind=True, name="lab.sleep")
def sleep(self, seconds: float, key: str = "sleep"):
    _ledger(self, "start", key=key, seconds=seconds)
    time.sleep(seconds)
    _ledger(self, "end", key=key)
    return key


_KEPT: list[bytearray] = []  # lab.hog's allocations: kept for the life of the process


@app.task(bind=True, name="lab.hog")
def hog(self, mib: int, key: str = "hog"):
    """Allocate `mib` MiB, touch every page and keep it (the process's peak RSS grows by
    about `mib` MiB): the memory that worker_max_memory_per_child recycles a child for."""
    _ledger(self, "start", key=key, mib=mib)
    block = bytearray(mib * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    _KEPT.append(block)
    _ledger(self, "end", key=key, kept_mib=sum(len(b) for b in _KEPT) // (1024 * 1024))
    return key


@app.task(bind=True, name="lab.churn")
def churn(self, key: str = "churn"):
    _ledger(self, "start", key=key)
    _ledger(self, "end", key=key)
    return key
