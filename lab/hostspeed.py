"""How fast the host's CPU is right now: a fixed calibration workload, timed in CPU seconds.

Why. Load says how busy the host is, not how fast it is. On a shared VM the
same work can cost much more CPU from one hour to the next: on this kind of
2-core machine (2026-12-04) the import micro-benchmark of the README's
"Bytecode" paragraph rose from 0.30 to 0.50 CPU-s within an hour with the host
idle and no steal reported, a RabbitMQ boot from 4.0 to 9.6 CPU-s, and the
same silent-exit cells from 0.62 to 0.84 CPU-s each. A timing-sensitive
verdict, and a wall time, mean little without it, so the runner samples the
speed through the run and every record it admits carries the latest sample
(`environment.lanes.host_speed_s`; n/a cells decided before provisioning
take no lane and carry none).

Contract.
- `calibrate()` runs CALIBRATION ROUNDS (3) times on the calling thread and
  returns the fastest round's CPU seconds (`time.thread_time`: the thread's
  own CPU, so other threads and a loaded run queue do not count; a slower
  CPU does). About 0.04-0.07 s here, varying up to 2x from one second to
  the next on this host (other tenants), so a run's median is the figure
  to compare. Never raises (0.0 when the workload fails).
- `SpeedLog(path)` takes a first sample before it returns (so `latest`, the
  last sample's cpu_s, is set for the first cell), then one every PERIOD_S
  (30 s) on a daemon thread, appending `{"wall", "mono", "pid", "cpu_s"}`
  lines to `path` (a run dir's `host_speed.jsonl`; a resumed run appends,
  and `pid` tells its runners apart). `close()` stops the thread, then takes
  a last sample on the caller's thread. Never raises (a sample that cannot
  be written is kept in memory only).
- `summarize(samples)` (pure): {"samples", "median_s", "min_s", "max_s",
  "spread"} with spread = max / min (1.0 = steady), or {} for none.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

PERIOD_S = 30.0
SPEED_FILE = "host_speed.jsonl"  # in the run dir
ROUNDS = 3  # the calibration keeps the fastest of 3 rounds: a preemption inside one round does not count


def _work() -> int:
    """Interpreter-bound work of the kind a worker's start does (dicts, strings, small objects,
    sorting, JSON), deterministic: the same operations on every call."""
    table = {f"key-{i}": (i, str(i) * 3) for i in range(20000)}
    text = json.dumps(sorted(table.items()))
    total = sum(len(v[1]) for v in json.loads(json.dumps(table)).values())
    return total + len(text) + sum(i * i % 7 for i in range(100000))


CALIBRATION = _work


def calibrate() -> float:
    """CPU seconds of one CALIBRATION round (the fastest of ROUNDS); never raises (0.0 on error)."""
    best = float("inf")
    try:
        for _ in range(ROUNDS):
            t0 = time.thread_time()
            CALIBRATION()
            best = min(best, time.thread_time() - t0)
    except Exception:
        return 0.0
    return round(best, 4)


def summarize(samples: list[float]) -> dict:
    """Median, min, max (CPU seconds) and spread (max / min) of calibration samples; {} for none."""
    values = [s for s in samples if s and s > 0]
    if not values:
        return {}
    return {"samples": len(values), "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4), "max_s": round(max(values), 4),
            "spread": round(max(values) / min(values), 2)}


def read_samples(path: Path) -> list[float]:
    """The cpu_s of every line of a `host_speed.jsonl` ([] when absent; bad lines skipped)."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            out.append(float(json.loads(line)["cpu_s"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


class SpeedLog:
    def __init__(self, path: Path, period_s: float = PERIOD_S) -> None:
        self.path, self.period_s = Path(path), period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="host-speed", daemon=True)
        self._thread.start()

    @property
    def latest(self) -> float | None:
        return self.samples[-1] if self.samples else None

    def _take(self) -> None:
        value = calibrate()
        self.samples.append(value)
        try:
            with open(self.path, "a") as out:
                out.write(json.dumps({"wall": time.time(), "mono": time.monotonic(), "pid": os.getpid(),
                                      "cpu_s": value}) + "\n")
        except OSError:
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._take()

    def close(self) -> None:
        """Stop the thread (waits up to 5 s for it), then take a last sample on the caller's
        thread; a second call does nothing. Never raises."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._take()
