"""Lay out a cell's journal and faults as SVG geometry (numbers and labels).

Contract: `layout(journal, faults)` returns a `Timeline` whose shapes are plain
numbers and strings; the template turns them into SVG, so every label goes
through Jinja2 autoescaping. Time is CLOCK_MONOTONIC seconds relative to the
first timestamp seen. One lane per process (pid, in order of first
appearance, labelled master/child from its events); each task is a bar from
its first start event to its last end event on the lane of the process that
started it (a task without an end runs to the right edge, marked unfinished);
overlapping tasks in one process stack in sub-rows. Faults (signals, kills,
starts, exits) are vertical lines across all lanes. Entries without a numeric
`mono` are listed in `rows` but not drawn. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEFT, PLOT, RIGHT, TOP = 130, 780, 30, 48
MARK_ROW, TASK_ROW, LANE_GAP = 20, 15, 8
TASK_START = ("exec_start", "task_prerun")
TASK_END = ("exec_end", "task_postrun", "task_failure", "task_success", "task_revoked")
MASTER_EVENTS = {"worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown"}
LABELLED = {"worker_init": "start", "worker_ready": "ready", "worker_shutting_down": "stopping",
            "worker_shutdown": "exit", "child_init": "child up", "callback": "callback"}
STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800]


@dataclass
class Lane:
    label: str
    y: float
    height: float


@dataclass
class Shape:
    x: float
    y: float
    w: float = 0.0
    h: float = 0.0
    label: str = ""
    title: str = ""
    css: str = ""


@dataclass
class Timeline:
    width: int = LEFT + PLOT + RIGHT
    height: int = 0
    span_s: float = 0.0
    lanes: list[Lane] = field(default_factory=list)
    bars: list[Shape] = field(default_factory=list)
    markers: list[Shape] = field(default_factory=list)
    faults: list[Shape] = field(default_factory=list)
    ticks: list[Shape] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.lanes or self.faults)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _pack(intervals: list[tuple[float, float, Any]]) -> list[int]:
    """Greedy interval packing: the sub-row of each interval (input order)."""
    ends: list[float] = []
    rows = []
    for start, end, _ in intervals:
        for index, last in enumerate(ends):
            if start >= last:
                ends[index] = end
                rows.append(index)
                break
        else:
            ends.append(end)
            rows.append(len(ends) - 1)
    return rows


def _tasks(journal: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for event in journal:
        mono, task_id, name = _num(event.get("mono")), event.get("task_id"), event.get("event")
        if mono is None or not task_id:
            continue
        task = tasks.setdefault(str(task_id), {"start": None, "end": None, "pid": None,
                                               "name": event.get("task") or "", "failed": False})
        if name in TASK_START and (task["start"] is None or mono < task["start"]):
            task["start"], task["pid"] = mono, event.get("pid")
        if name in TASK_END and (task["end"] is None or mono > task["end"]):
            task["end"] = mono
        task["failed"] |= name == "task_failure"
        task["name"] = task["name"] or event.get("task") or ""
    return {k: v for k, v in tasks.items() if v["start"] is not None}


def layout(journal: list[dict[str, Any]], faults: list[dict[str, Any]]) -> Timeline:
    tl = Timeline()
    journal = [e for e in journal or [] if isinstance(e, dict)]
    faults = [f for f in faults or [] if isinstance(f, dict)]
    stamps = [m for m in (_num(e.get("mono")) for e in journal + faults) if m is not None]
    if not stamps:
        tl.rows = [_row(e, "journal", None) for e in journal] + [_row(f, "fault", None) for f in faults]
        return tl
    t0 = min(stamps)
    tl.span_s = span = max(max(stamps) - t0, 1e-3)

    def x(t: float) -> float:
        return round(LEFT + (t - t0) / span * PLOT, 1)

    pids: list[Any] = []
    roles: dict[Any, str] = {}
    for event in journal:
        pid = event.get("pid")
        if pid not in pids:
            pids.append(pid)
        if event.get("event") in MASTER_EVENTS:
            roles[pid] = "master"
        elif event.get("event") == "child_init":
            roles.setdefault(pid, "child")
    tasks = _tasks(journal)
    y = TOP
    for pid in pids:
        mine = sorted(((t["start"], t["end"] if t["end"] is not None else t0 + span, (tid, t))
                       for tid, t in tasks.items() if t["pid"] == pid), key=lambda i: i[0])
        sub = _pack(mine)
        height = MARK_ROW + TASK_ROW * (max(sub) + 1 if sub else 0) + 4
        tl.lanes.append(Lane(f"{roles.get(pid, 'pid')} {pid}", y, height))
        for (start, end, (tid, task)), row in zip(mine, sub):
            unfinished = task["end"] is None
            short = str(task["name"]).rsplit(".", 1)[-1] or str(tid)[:8]
            width = max(x(end) - x(start), 2.0)
            tl.bars.append(Shape(
                x(start), y + MARK_ROW + row * TASK_ROW, width, TASK_ROW - 3,
                label=short if width > 7 * len(short) else "",
                title=f"{task['name'] or 'task'} {tid}: {start - t0:.3f}s → "
                      + ("never finished" if unfinished else f"{end - t0:.3f}s ({end - start:.3f}s)"),
                css="bar" + (" bar-fail" if task["failed"] else "") + (" bar-open" if unfinished else "")))
        for event in journal:
            mono = _num(event.get("mono"))
            if event.get("pid") != pid or mono is None or event.get("event") in TASK_START + TASK_END:
                continue
            name = str(event.get("event", ""))
            tl.markers.append(Shape(x(mono), y + MARK_ROW / 2, label=LABELLED.get(name, ""),
                                    title=f"{name} pid {pid} at {mono - t0:.3f}s"
                                          + (f" task {event.get('task_id')}" if event.get("task_id") else ""),
                                    css="mk mk-" + "".join(c if c.isalnum() else "-" for c in name)))
        y += height + LANE_GAP
    levels: list[float] = [-1e9, -1e9, -1e9]
    for fault in faults:
        mono = _num(fault.get("mono"))
        if mono is None:
            continue
        kind = str(fault.get("kind", ""))
        what = fault.get("signal") if kind in ("signal", "kill") else (fault.get("detail") or kind)
        label = f"{what}→{fault.get('target')}" if kind in ("signal", "kill") and fault.get("target") else str(what)
        label = label if len(label) <= 28 else label[:27] + "…"
        level = next((i for i, last in enumerate(levels) if x(mono) - last > 95), 0)
        levels[level] = x(mono)
        tl.faults.append(Shape(x(mono), 12 + level * 12, label=label,
                               title=f"{kind} {fault.get('signal') or ''} target={fault.get('target')} "
                                     f"pid={fault.get('pid')} at {mono - t0:.3f}s {fault.get('detail') or ''}",
                               css="flt flt-" + ("".join(c for c in kind if c.isalnum()) or "other")))
    tl.height = int(max(y, TOP + 20) + 24)
    step = next((s for s in STEPS if span / s <= 10), STEPS[-1])
    tick = 0.0
    while tick <= span + 1e-9:
        tl.ticks.append(Shape(x(t0 + tick), tl.height - 18, label=f"{tick:g}s"))
        tick = round(tick + step, 6)
    merged = [(_num(e.get("mono")), _row(e, "journal", t0)) for e in journal]
    merged += [(_num(f.get("mono")), _row(f, "fault", t0)) for f in faults]
    tl.rows = [r for _, r in sorted(merged, key=lambda i: (i[0] is None, i[0] or 0.0))]
    return tl


def _row(item: dict[str, Any], source: str, t0: float | None) -> dict[str, Any]:
    mono = _num(item.get("mono"))
    known = {"event", "kind", "pid", "mono", "wall", "task_id", "task", "signal", "target"}
    extra = {k: v for k, v in item.items() if k not in known and v not in (None, "")}
    return {
        "t": f"{mono - t0:.3f}" if mono is not None and t0 is not None else "",
        "source": source,
        "what": item.get("event") or " ".join(str(item.get(k) or "") for k in ("kind", "signal")).strip(),
        "pid": item.get("pid", ""),
        "task": " ".join(str(item.get(k)) for k in ("task", "task_id") if item.get(k)),
        "detail": (f"target={item['target']} " if item.get("target") else "")
                  + " ".join(f"{k}={v}" for k, v in extra.items()),
    }
