"""How many cells run at once: a fixed number, or `auto` — admitted by measured CPU load.

Contract. `LaneGate(limit, auto)` is entered by a lane thread before it starts
a cell (`with gate.admit(): ...`). With a fixed limit it is a semaphore. With
`auto`, up to `limit` cells (default AUTO_LANES_PER_CORE × cores) may run,
but a new cell is admitted only while the host's CPU utilisation, sampled
every 0.5 s by psutil over the last ~2 s, is under `busy` (default 0.7, a
fraction of all cores), and no sooner than RAMP_S after the previous
admission (so the load has seen it; SAMPLE_S while the load is under
QUIET × `busy`) — and always when nothing runs, so the run progresses. Cells are
mostly waiting (timeouts, sleeps, a broker's restore cadence), so more lanes
than cores cost nothing until the CPU is busy; timing-sensitive cells then
keep the CPU they need. Every admission is recorded (`gate.history`: lanes
in use and the load seen) so a run's record says what it ran under. After
`max_wait_s` (30 s) a cell is admitted whatever the load and the ramp while
fewer cells than cores run, so a host busy with other work still progresses
one lane per core; beyond that a lane waits for a running cell to end, and
every cell ends within its own bound (lab.runner). A fixed `limit` defaults
to 2. The basis, and the verdicts compared with 1 lane: bench/bench_matrix.py.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator

import psutil

AUTO_LANES_PER_CORE = 8  # the most `auto` admits: 16 on 2 cores. In run 20261204-180528 (538 cells, 12 lanes)
# the cap, not the CPU, held admissions: 102 of 515 were at 12 running, the load at admission averaged
# 0.41-0.60 against the 0.7 threshold and the host was 61 % busy over the run (vmstat). With bytecode compiled (lab/venvs.py) a cell
# costs far less CPU: run 20261202-045600 had all 6 lanes busy at 201 of 305 admissions while the load at
# admission had median 0.37 — the limit, not the CPU, held it back (before, 6 lanes ran the CPU at 72 % and
# 8 lanes admitted in one dip overloaded the host, see RAMP_S). 8 lanes (4 per core) then ran the CPU at
# about 45 %; the busy threshold below, not this cap, is what keeps timing-sensitive cells their CPU.
SAMPLE_S = 0.5
WINDOW = 4  # samples: ~2 s
# After an admission the next waits until the load window has seen the new cell: lanes admitted in
# one dip all start their interpreters and servers at once (measured: 8 RabbitMQ broker-fault cells
# admitted together drove the load average to 20 on 2 cores and a 28 s cell to 105 s).
RAMP_S = 2 * SAMPLE_S  # two fresh samples (the whole 2 s window, with 8 lanes, ran 951 s against 823 s: not apart)
# ...but on a quiet host one fresh sample is enough: in run 20261202-123112 (550 cells, up to 12 lanes) the
# ramp alone held admissions to one a second through the second half, where short cells (silent-exit,
# lifecycle-smoke: 2-5 s) ran 3-7 at a time at a load of 0.3-0.45 at admission. At 0.6 the tail of run
# 20261204-024948 (80 silent-exit cells, ~0.6 CPU-s each) was still held to one a second: admitted at a
# load of 0.43, just over 0.42, with the host 45 % busy for its last ~2 minutes.
# At 0.75 (52.5 %) run 20261204-180528's middle third was admitted at 0.53-0.60, one a second.
QUIET = 0.85  # of `busy`: below it (59.5 %) the next admission waits SAMPLE_S, not RAMP_S


class LaneGate:
    def __init__(self, limit: int | None = None, auto: bool = False, busy: float = 0.7,
                 max_wait_s: float = 30.0) -> None:
        cores = os.cpu_count() or 1
        self.auto = auto
        self.limit = max(1, limit or (AUTO_LANES_PER_CORE * cores if auto else 2))
        self.busy, self.max_wait_s = busy, max_wait_s
        self.running = 0
        self.history: list[dict] = []
        self._cond = threading.Condition()
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._last_admit = float("-inf")
        if auto:
            psutil.cpu_percent(interval=None)  # prime the counter
            threading.Thread(target=self._sample, name="lane-load", daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            value = psutil.cpu_percent(interval=None) / 100.0
            with self._cond:
                self._samples = (self._samples + [value])[-WINDOW:]
                self._cond.notify_all()

    @property
    def load(self) -> float:
        """CPU utilisation over the last ~2 s, 0..1 of all cores (0 before the first sample)."""
        return sum(self._samples) / len(self._samples) if self._samples else 0.0

    def _may_start(self, waited: float) -> bool:
        if self.running >= self.limit:
            return False
        if not self.auto or self.running == 0:
            return True
        if waited >= self.max_wait_s and self.running < (os.cpu_count() or 1):
            return True
        ramp = SAMPLE_S if self.load < self.busy * QUIET else RAMP_S
        if time.monotonic() - self._last_admit < ramp:
            return False
        return self.load < self.busy

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        start = time.monotonic()
        with self._cond:
            while not self._may_start(time.monotonic() - start):
                self._cond.wait(SAMPLE_S)
            self.running += 1
            self._last_admit = time.monotonic()
            self.history.append({"running": self.running, "load": round(self.load, 2),
                                 "waited_s": round(time.monotonic() - start, 2)})
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._cond.notify_all()

    def close(self) -> None:
        self._stop.set()

    def describe(self) -> dict:
        runs = [h["running"] for h in self.history] or [0]
        return {"mode": "auto" if self.auto else "fixed", "limit": self.limit, "busy": self.busy,
                "max_concurrent": max(runs), "admissions": len(self.history),
                "waited_s": round(sum(h["waited_s"] for h in self.history), 1)}
