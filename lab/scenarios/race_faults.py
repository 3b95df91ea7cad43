"""Faults and plans of the shutdown-race scenario, as data (like t/smoke/operations).

Contract: a cell's *mode* says how the shutdown signal is timed against pool
repopulation (`Mode.parse`: "random", "targeted[@point][+kill-child]",
"slow-start"); its *profile* says which signals are sent (`signal_plan(env)`
reads LAB_RACE_SIGNALS, and REMAP_SIGTERM is a real worker setting the
profile passes to the worker). `worker_env(mode, plan, ...)` is the only way
the driver configures lab.app.race_hooks. `JournalTail` reads the journal
incrementally (the flood polls it often). `race_matches(log)` names the
race's own log lines that lab.signatures does not know. `chained_failures(log)`
names every traceback by its *final* exception (type@innermost frame, the
lab.signatures scheme), chained contexts ("During handling of the above
exception") and tracebacks printed through Celery's stderr logger (each line
prefixed) included, so a TypeError whose context is the _sentinel_poll
AttributeError is not taken for it. Standard library only.
"""

from __future__ import annotations

import enum
import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import signatures


class Kind(str, enum.Enum):
    RANDOM = "random"        # the seed's method: signal at a random 1-4 s into the churn
    TARGETED = "targeted"    # the master signals itself at a named point of repopulation
    SLOW_START = "slow-start"  # children slower to start than worker_proc_alive_timeout


class Point(str, enum.Enum):
    """Named points of pool repopulation, in AsynPool._maintain_pool (see lab.app.race_hooks)."""
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


def signum(name: str) -> int:
    return getattr(signal, "SIG" + name)


def wchan(pid: int) -> dict[str, str]:
    """Kernel wait channel of each thread of a process (futex: a lock; epoll: an idle loop)."""
    out = {}
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            out[f"{task.name} {(task / 'comm').read_text().strip()}"] = (task / "wchan").read_text() or "running"
        except OSError:
            continue
    return out


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


LOG_PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: \w+/[\w-]+\] ")
CHAINED = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")
HEADER = re.compile(r"(Unrecoverable error|Error in timer|Task handler raised error|"
                    r"Unhandled exception|Exception ignored)[^\n]*")
EVIDENCE_ONLY = ("WorkerLostError", "Terminated", "WorkerTerminate", "WorkerShutdown", "SystemExit")


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:: |:$|$)")


def _unprefix(text: str) -> str:
    """Drop the log prefix from tracebacks written through Celery's stderr proxy: a record per
    write, so a line per frame, or (sys.unraisablehook: 'Exception ignored in') a record per token."""
    out, inside = [], False
    for line in text.splitlines():
        found = LOG_PREFIX.match(line)
        payload = line[found.end():] if found else line
        if found and payload.startswith("Traceback (most recent call last):"):
            inside = True
        elif found and inside and not payload.startswith(" "):
            if EXCEPTION_LINE.match(payload):
                inside = False  # the exception line closes the traceback
                out.append(payload)
                continue
            payload = "    " + payload  # a fragment of a source line: stays inside the block
        out.append(payload if found and inside else line)
    return "\n".join(out) + "\n"


def chained_failures(text: str) -> list[dict[str, Any]]:
    """One entry per exception chain in the log, named by its final exception."""
    text = _unprefix(text)
    blocks = signatures.tracebacks(text)
    chains: list[list[tuple[int, int, str]]] = []
    for block in blocks:
        gap = text[chains[-1][-1][1]:block[0]].strip() if chains else ""
        if chains and gap in CHAINED:
            chains[-1].append(block)
        else:
            chains.append([block])
    out = []
    for chain in chains:
        start, end, final = chain[-1]
        exc_type, frame = signatures.traceback_key(final)
        last = final.strip().splitlines()[-1] if final.strip() else ""
        before = text[max(0, chain[0][0] - 600):chain[0][0]].splitlines()
        header = HEADER.search(before[-1] if before else "")
        kind = "unrecoverable" if header and header.group(1) == "Unrecoverable error" else "unknown"
        if exc_type == "AttributeError" and "_sentinel_poll" in last and frame.endswith("_untrack_child_process"):
            name = "sentinel-poll-attributeerror"
        elif exc_type == "AssertionError" and frame.endswith("verify_process_alive"):
            name = "verify-process-alive-assertion"
        else:
            name = f"{kind}:{exc_type}" + (f"@{frame}" if frame else "")
        contexts = [signatures.traceback_key(b[2]) for b in chain[:-1]]
        out.append({"name": name, "type": exc_type, "frame": frame, "message": last[:300],
                    "header": header.group(0)[:200] if header else "",
                    "contexts": [f"{t}@{f}" for t, f in contexts],
                    "severity": "evidence" if exc_type in EVIDENCE_ONLY else "bug",
                    "excerpt": "\n".join(([before[-1]] if before else []) + [b[2].rstrip() for b in chain])[-3000:]})
    return out
