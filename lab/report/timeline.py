"""Lay out a cell's journal and faults as SVG geometry (numbers and labels).

Contract: `layout(journal, faults)` returns a `Timeline` whose shapes are plain
numbers and strings; the template turns them into SVG, so every label goes
through Jinja2 autoescaping. Time is CLOCK_MONOTONIC seconds relative to the
first timestamp seen. One lane per process (pid, in order of first
appearance, labelled master/child from its events); each *execution* is a
box on the lane of the process that ran it (a redelivered task re-run by a
replacement worker is a second box there, labelled redelivered); an
execution without an end ends at the kill that ended its process (marked
killed) or at the right edge. Overlapping executions stack in sub-rows.
Faults (signals, kills, starts, exits) and signals the lab's hooks sent from
inside the worker (journal `race_inject`) are vertical lines with labels on
as many label rows as needed so none overlap; with `metrics`, the end of the
observation window and the visibility-timeout expiry are marked too. Entries
without a numeric `mono` are listed in `rows` but not drawn. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEFT, PLOT, RIGHT, TOP = 130, 1060, 40, 48
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
    top: float = TOP

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


def _executions(journal: list[dict[str, Any]], faults: list[dict[str, Any]], right: float) -> list[dict[str, Any]]:
    """One execution per (task, process) run: a start event opens it on that pid, the next end
    event of the same task on the same pid closes it. An execution never closed ends where its
    process was killed (a kill/SIGKILL fault at or after its start) or at the right edge."""
    kills = sorted(_num(f.get("mono")) for f in faults
                   if _num(f.get("mono")) is not None and (f.get("kind") == "kill" or f.get("signal") == "SIGKILL"))
    open_: dict[tuple[str, Any], dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for event in sorted((e for e in journal if _num(e.get("mono")) is not None and e.get("task_id")),
                        key=lambda e: e["mono"]):
        key, name, mono = (str(event["task_id"]), event.get("pid")), event.get("event"), float(event["mono"])
        if name in TASK_START and key not in open_:
            open_[key] = {"task_id": key[0], "pid": key[1], "start": mono, "end": None, "killed": False,
                          "name": event.get("task") or "", "failed": False,
                          "redelivered": bool(event.get("redelivered"))}
        elif name in TASK_START:
            open_[key]["redelivered"] |= bool(event.get("redelivered"))
        elif name in TASK_END and key in open_:
            run = open_.pop(key)
            run["end"], run["failed"] = mono, run["failed"] or name == "task_failure"
            done.append(run)
    for run in open_.values():
        kill = next((k for k in kills if k >= run["start"]), None)
        run["end"], run["killed"] = (kill, True) if kill is not None else (right, False)
        run["unfinished"] = True
        done.append(run)
    return sorted(done, key=lambda r: r["start"])


def _place(levels: list[float], x: float, width: float) -> int:
    """The first label row where [x, x+width] does not overlap a label already placed; grows rows."""
    for index, last in enumerate(levels):
        if x >= last:
            levels[index] = x + width
            return index
    levels.append(x + width)
    return len(levels) - 1


def _text_w(label: str) -> float:
    return 6.2 * len(label) + 8


def layout(journal: list[dict[str, Any]], faults: list[dict[str, Any]],
           metrics: dict[str, Any] | None = None) -> Timeline:
    """The timeline of one attempt (see the module contract); `metrics` marks the observation
    window (observed_until_s after the first signal) and the visibility-timeout expiry."""
    tl = Timeline()
    metrics = metrics or {}
    journal = [e for e in journal or [] if isinstance(e, dict)]
    faults = [f for f in faults or [] if isinstance(f, dict)]
    hooks = [dict(kind="hook", signal=f"SIG{e['signal']}" if not str(e.get("signal", "")).startswith("SIG")
                  else e["signal"], target=f"master (hook {e.get('point', '')})", pid=e.get("pid"), mono=e["mono"])
             for e in journal if e.get("event") == "race_inject" and e.get("signal") and _num(e.get("mono")) is not None]
    hooks += [dict(kind="hook", signal="SIGKILL", target=f"child {e['kill_child']} (hook)", pid=e["kill_child"],
                   mono=e["mono"])
              for e in journal if e.get("event") == "race_inject" and isinstance(e.get("kill_child"), int)
              and not isinstance(e.get("kill_child"), bool) and _num(e.get("mono")) is not None]
    stamps = [m for m in (_num(e.get("mono")) for e in journal + faults) if m is not None]
    if not stamps:
        tl.rows = [_row(e, "journal", None) for e in journal] + [_row(f, "fault", None) for f in faults]
        return tl
    t0 = min(stamps)
    signals = sorted(_num(f.get("mono")) for f in faults if f.get("kind") in ("signal", "kill")
                     and _num(f.get("mono")) is not None)
    window_end = (signals[0] + float(metrics["observed_until_s"])) if signals and _num(
        metrics.get("observed_until_s")) is not None else None
    runs = _executions(journal, faults, max(stamps))
    vt = _num(metrics.get("visibility_timeout_s"))
    vt_at = None
    if vt and any(r["killed"] for r in runs):
        killed = next(r for r in runs if r["killed"])
        vt_at = killed["start"] + vt
    right = max(stamps + [t for t in (window_end, vt_at) if t is not None])
    tl.span_s = span = max(right - t0, 1e-3)

    def x(t: float) -> float:
        return round(LEFT + (t - t0) / span * PLOT, 1)

    # faults and hook signals on label rows above the lanes, never overlapping
    levels: list[float] = []
    placed = []
    for fault in sorted(faults + hooks, key=lambda f: _num(f.get("mono")) or 0.0):
        mono = _num(fault.get("mono"))
        if mono is None:
            continue
        kind = str(fault.get("kind", ""))
        what = fault.get("signal") if kind in ("signal", "kill", "hook") else (fault.get("detail") or kind)
        label = f"{what}→{fault.get('target')}" if kind in ("signal", "kill", "hook") and fault.get("target") else str(what)
        label = label if len(label) <= 34 else label[:33] + "…"
        if kind == "start" and fault.get("worker"):
            label = f"start {fault['worker']}"
        level = _place(levels, x(mono), _text_w(label))
        placed.append((mono, level, label, kind, fault))
    for name, t, css in (("observation ends", window_end, "obs"), (f"visibility timeout {vt:g} s expires" if vt else "",
                                                                    vt_at, "vt")):
        if t is not None and name:
            placed.append((t, _place(levels, x(t), _text_w(name)), name, css, {}))
    top = 16 + 13 * max(len(levels), 1)
    for mono, level, label, kind, fault in placed:
        anchor_end = x(mono) + _text_w(label) > tl.width - 4
        tl.faults.append(Shape(x(mono), 12 + level * 13, w=1.0 if anchor_end else 0.0, label=label,
                               title=(f"{kind} {fault.get('signal') or ''} target={fault.get('target')} "
                                      f"pid={fault.get('pid')} at {mono - t0:.3f}s {fault.get('detail') or ''}"
                                      if fault else f"{label} at {mono - t0:.3f}s"),
                               css="flt flt-" + ("".join(c for c in kind if c.isalnum()) or "other")))
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
    y = top + 6
    for pid in pids:
        mine = [(r["start"], r["end"], r) for r in runs if r["pid"] == pid]
        sub = _pack(mine)
        height = MARK_ROW + TASK_ROW * (max(sub) + 1 if sub else 0) + 4
        tl.lanes.append(Lane(f"{roles.get(pid, 'pid')} {pid}", y, height))
        for (start, end, run), row in zip(mine, sub):
            short = str(run["name"]).rsplit(".", 1)[-1] or str(run["task_id"])[:8]
            if run["redelivered"]:
                short += " (redelivered)"
            width = max(x(end) - x(start), 2.0)
            state = ("killed" if run["killed"] else "never finished") if run.get("unfinished") else ""
            inside = width > 6.2 * len(short) + 4
            tl.bars.append(Shape(
                x(start), y + MARK_ROW + row * TASK_ROW, width, TASK_ROW - 3,
                label=short if inside or x(start) - LEFT > 6.2 * len(short) + 6 else "",
                title=f"{run['name'] or 'task'} {run['task_id']} on pid {pid}: {start - t0:.3f}s → {end - t0:.3f}s "
                      f"({end - start:.3f}s)" + (f", {state}" if state else "")
                      + (", redelivered" if run["redelivered"] else ""),
                css="bar" + (" bar-fail" if run["failed"] else "") + (" bar-open" if state else "")
                    + ("" if inside else " label-left")))
        label_end = -1e9
        for event in journal:
            mono = _num(event.get("mono"))
            if event.get("pid") != pid or mono is None or event.get("event") in TASK_START + TASK_END:
                continue
            name = str(event.get("event", ""))
            label = LABELLED.get(name, "")
            if label and x(mono) + 6 < label_end:
                label = ""   # would overlap the previous label on this lane: the tooltip keeps it
            end_anchor = bool(label) and x(mono) + 6 + _text_w(label) > tl.width
            if label:
                label_end = x(mono) + 6 + _text_w(label)
            tl.markers.append(Shape(x(mono), y + MARK_ROW / 2, w=1.0 if end_anchor else 0.0, label=label,
                                    title=f"{name} pid {pid} at {mono - t0:.3f}s"
                                          + (f" task {event.get('task_id')}" if event.get("task_id") else ""),
                                    css="mk mk-" + "".join(c if c.isalnum() else "-" for c in name)))
        y += height + LANE_GAP
    tl.top = top
    tl.height = int(max(y, top + 20) + 24)
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
