"""What a cell waited for: the time it spent on the system under test, apart from the lab's own cost.

Contract. Every wait a scenario makes on the worker or the broker goes
through this module's ledger (`WAITS`, one per cell process): `hold(s, why)`
for a designed pause (a grace period, a fault's duration, a window for a
duplicate to show; it replaces `time.sleep` in scenario, fault and observer
code), `waiting(kind)` around a bounded wait for an observed event
(`CellContext.wait_for`, `WorkerController.wait_exit`), and the worker's own
start-to-ready (`WorkerController.wait_ready`, kind "start"). Only the
outermost wait of the main thread counts, so nested waits and a nemesis
thread's sleeps are never counted twice.

A wait inside another is booked as the outer one's kind: a start that is
itself observed (silent-exit's start watcher) counts as `observe`.
`WAITS.summary()` gives seconds per kind; `lab.cellrun` stores it in the
record of every cell that ran as `outcome.metrics.waits` and
`outcome.metrics.inherent_s` (the designed and observed waits: what the
scenario must wait by design); cells decided before provisioning, and
setup-failed/error records, carry none. Everything else in the cell's
duration — interpreters and imports, broker provisioning, `confirm`
(WorkerController.wait_ready's confirm_s), teardown, judging — is the lab's
overhead. bench/bench_matrix.py prints the ratio cell time / inherent waits
twice: with the workers' `start` counted as overhead (strict) and as needed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

KINDS = ("hold", "observe", "start", "confirm")
INHERENT = ("hold", "observe")  # what the scenario needs by design; "start" is Celery's own start-up


class WaitLedger:
    def __init__(self) -> None:
        self.seconds = {k: 0.0 for k in KINDS}
        self._depth = 0

    def reset(self) -> None:
        self.seconds = {k: 0.0 for k in KINDS}
        self._depth = 0

    @contextlib.contextmanager
    def waiting(self, kind: str) -> Iterator[None]:
        """Count the time inside as `kind` (one of KINDS), unless already inside a counted wait
        or off the main thread. Raises ValueError for an unknown kind."""
        if kind not in self.seconds:
            raise ValueError(f"wait kind {kind!r}; allowed: {', '.join(KINDS)}")
        counted = threading.current_thread() is threading.main_thread() and self._depth == 0
        if counted:
            self._depth += 1
        t0 = time.monotonic()
        try:
            yield
        finally:
            if counted:
                self._depth -= 1
                self.seconds[kind] += time.monotonic() - t0

    def hold(self, seconds: float, why: str = "") -> None:
        """A designed pause of `seconds` (s, clipped at 0); `why` documents it at the call site."""
        with self.waiting("hold"):
            time.sleep(max(0.0, seconds))

    def summary(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["inherent"] = round(sum(self.seconds[k] for k in INHERENT), 3)
        return out


WAITS = WaitLedger()
hold = WAITS.hold
waiting = WAITS.waiting
