"""Faults and plans of the shutdown-race scenario, as data (like t/smoke/operations).

Contract: a cell's *mode* says how the shutdown signal is timed against pool
repopulation (`Mode.parse`: "random", "targeted[@point][+kill-child]",
"slow-start"); its *profile* says which signals are sent (`signal_plan(env)`
reads LAB_RACE_SIGNALS, and REMAP_SIGTERM is a real worker setting the
profile passes to the worker). `worker_env(mode, plan, ...)` is the only way
the driver configures lab.app.race_hooks. `JournalTail` reads the journal
incrementally (the flood polls it often). `race_matches(log)` names the
race's own log lines that lab.signatures does not know. Standard library only.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Kind(str, enum.Enum):
    RANDOM = "random"        # the seed's method: signal at a random 1-4 s into the churn
    TARGETED = "targeted"    # the master signals itself at a named point of repopulation
    SLOW_START = "slow-start"  # children slower to start than worker_proc_alive_timeout


class Point(str, enum.Enum):
    """Named points of AsynPool._create_worker_process (see lab.app.race_hooks)."""
    BEFORE_CREATE = "before-create"  # worker_before_create_process receiver: no new process yet
    REGISTERING = "registering"      # in pool._pool, not forked (_popen None, pid None)
    UP = "up"                        # forked, sentinel not tracked (_sentinel_poll unset)
    REAPING = "reaping"              # _join_exited_workers, mid-loop over pool._pool, before `del`


class Fault(str, enum.Enum):
    SIGNAL_MASTER = "signal-master"    # a real signal to the master (driver or master itself)
    KILL_NEW_CHILD = "kill-new-child"  # SIGKILL the child being registered
    SLOW_CHILD_INIT = "slow-child-init"  # worker_process_init sleeps past the alive timeout


@dataclass(frozen=True)
class Mode:
    kind: Kind
    point: Point | None = None
    kill_child: bool = False

    @classmethod
    def parse(cls, text: str) -> "Mode":
        base, _, kill = text.partition("+")
        name, _, point = base.partition("@")
        kind = Kind(name)
        if kill and (kill != "kill-child" or kind != Kind.TARGETED):
            raise ValueError(f"mode {text!r}: only targeted modes take +kill-child")
        if kind != Kind.TARGETED:
            if point:
                raise ValueError(f"mode {text!r}: only targeted modes name a point")
            return cls(kind)
        chosen = Point(point) if point else Point.UP
        if kill and chosen != Point.UP:
            raise ValueError(f"mode {text!r}: the new child exists only at point 'up'")
        return cls(kind, chosen, bool(kill))

    @property
    def faults(self) -> list[Fault]:
        out = [Fault.SIGNAL_MASTER]
        if self.kill_child:
            out.insert(0, Fault.KILL_NEW_CHILD)
        if self.kind == Kind.SLOW_START:
            out.insert(0, Fault.SLOW_CHILD_INIT)
        return out


PLAN_ENV = "LAB_RACE_SIGNALS"
DEFAULT_PLAN = ("QUIT",)
RANDOM_WINDOW_S = (1.0, 4.0)      # the seed: SIGTERM at a random 1-4 s
SECOND_SIGNAL_DELAY_S = (0.2, 1.0)  # TERM then QUIT: QUIT while the warm shutdown runs
PROC_ALIVE_TIMEOUT_S = 1.0        # slow-start: worker_proc_alive_timeout for the cell
SLOW_INIT_FACTOR = (0.6, 1.6)     # child start = factor x timeout: most are too slow


def signal_plan(env: dict[str, str]) -> dict[str, Any]:
    """The signals a cell sends, in order, from its profile's environment."""
    names = [s.strip().upper().removeprefix("SIG") for s in env.get(PLAN_ENV, "").split(",") if s.strip()]
    names = names or list(DEFAULT_PLAN)
    remap = env.get("REMAP_SIGTERM", "").upper() == "SIGQUIT"
    cold = [n for n in names if n in ("QUIT", "INT") or (n == "TERM" and remap)]
    return {"signals": names, "remap_sigterm": remap, "cold": bool(cold),
            "label": ",".join(names) + (" (REMAP_SIGTERM=SIGQUIT)" if remap else "")}


def worker_env(mode: Mode, plan: dict[str, Any], skip: int) -> dict[str, str]:
    """LAB_RACE_* for lab.app.race_hooks (and the setting slow-start needs)."""
    env = {"LAB_APP_MODULES": "lab.app.race_hooks"}
    if mode.kind == Kind.TARGETED:
        env.update({"LAB_RACE_POINT": mode.point.value, "LAB_RACE_SIGNAL": plan["signals"][0],
                    "LAB_RACE_SKIP": str(skip), "LAB_RACE_KILL_CHILD": "1" if mode.kill_child else ""})
    if mode.kind == Kind.SLOW_START:
        lo, hi = (round(f * PROC_ALIVE_TIMEOUT_S, 3) for f in SLOW_INIT_FACTOR)
        env.update({"LAB_RACE_CHILD_INIT_SLEEP": f"{lo},{hi}",
                    "LAB_PROC_ALIVE_TIMEOUT": str(PROC_ALIVE_TIMEOUT_S)})
    return env


class JournalTail:
    """New journal events since the last read (the journal only grows)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.events = Path(path), 0, []

    def poll(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a torn last line waits for the next poll
        self.offset += end
        new = []
        for line in data[:end].splitlines():
            try:
                new.append(json.loads(line))
            except ValueError:
                continue
        self.events.extend(new)
        return new

    def count(self, event: str, **match: Any) -> int:
        return sum(1 for e in self.events if e.get("event") == event
                   and all(e.get(k) == v for k, v in match.items()))

    def first(self, event: str) -> dict | None:
        return next((e for e in self.events if e.get("event") == event), None)


@dataclass(frozen=True)
class RaceLine:
    name: str
    title: str
    pattern: str


RACE_LINES = [
    RaceLine("phantom-process-exit",
             "billiard reaped a pool process that was never started (pid None) during shutdown",
             r"Process '[\w-]+' pid:None exited with 'exitcode None'"),
]
UP_TIMEOUT = re.compile(r"Timed out waiting for UP message")


def race_matches(text: str) -> list[dict[str, Any]]:
    out = []
    for line in RACE_LINES:
        found = re.search(line.pattern, text)
        if found:
            start = text.rfind("\n", 0, found.start()) + 1
            end = text.find("\n", found.end())
            out.append({"name": line.name, "title": line.title, "known": False, "severity": "bug",
                        "excerpt": text[start:end if end >= 0 else len(text)]})
    return out
