"""Live progress for long runs: cells done, verdict counts, ETA.

Contract: `Progress.update(record)` is thread-safe and prints one line per
finished cell when stdout is not a terminal (CI logs), or drives a rich live
bar on a terminal. Counts cover the whole run (every shard already in
results.jsonl), not only this session's cells. The ETA (seconds) is the wall
time so far scaled by the planned work left over the planned work done
(`estimates`: cell id -> lab.plan.cell_estimate seconds, this session's
cells): the runner starts the longest cells first, so the mean duration of
the cells done so far, the fallback without estimates, overstates what is
left (a 1-lane run of 381 cells showed "ETA 475m" after 2 cells and took
about an hour).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

from lab.results import ResultRecord

COLOURS = {"pass": "green", "bug": "red", "error": "magenta", "stall": "yellow", "lost": "red",
           "duplicate": "red", "hang": "red", "silent-exit": "red", "n/a": "dim", "failed-fast": "cyan"}


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, total: int, already: list[ResultRecord], lanes: int, label: str = "",
                 estimates: dict[str, float] | None = None):
        self.total, self.lanes, self.label = total, max(1, lanes), label
        self.estimates = dict(estimates or {})
        self.planned_s, self.planned_done_s = sum(self.estimates.values()), 0.0
        self.counts = Counter(r.outcome.verdict.value for r in already)
        self.done = len(already)
        self.durations: list[float] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._rich = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn
            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                                      TextColumn("{task.fields[counts]}"))
            self._task = self._rich.add_task(label or "cells", total=total, completed=self.done,
                                             counts=self._counts_text())
            self._rich.start()

    def _counts_text(self) -> str:
        return " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))

    def eta(self, remaining: int) -> float:
        """Seconds left (NaN before the first cell ends); see the module contract."""
        if not self.durations:
            return float("nan")
        if self.planned_done_s > 0:
            left = max(0.0, self.planned_s - self.planned_done_s)
            return (time.monotonic() - self.started) * left / self.planned_done_s
        mean = sum(self.durations) / len(self.durations)
        return remaining * mean / self.lanes

    def update(self, record: ResultRecord, wall_s: float) -> None:
        with self._lock:
            self.done += 1
            self.counts[record.outcome.verdict.value] += 1
            self.durations.append(wall_s)
            self.planned_done_s += self.estimates.get(record.cell_id, 0.0)
            remaining = max(0, self.total - self.done)
            eta = self.eta(remaining)
            if self._rich:
                self._rich.update(self._task, completed=self.done, counts=self._counts_text())
                self._rich.console.print(self.line(record, wall_s, eta), highlight=False)
            else:
                print(self.line(record, wall_s, eta), flush=True)

    def line(self, record: ResultRecord, wall_s: float, eta: float) -> str:
        verdict = record.outcome.verdict.value
        eta_text = "?" if eta != eta else fmt_duration(eta)
        return (f"[{self.done}/{self.total}] {verdict:<11} {record.cell_id} ({wall_s:.1f}s) "
                f"| {self._counts_text()} | ETA {eta_text}")

    def close(self) -> None:
        if self._rich:
            self._rich.stop()
