"""The chord workload eviction and chord-stall scenarios share, and its ledger.

Contract: `send_chord(ctx, durations)` sends one chord whose member i sleeps
durations[i] and returns i, with `lab.collect` as callback, and returns the
member task ids. `ledger(events)` reads the journal back into per-member
executions and callback firings — the source of truth for lost, duplicate
and late work (the result backend is never trusted for that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.journal import select


@dataclass
class Ledger:
    starts: dict[str, list[dict]] = field(default_factory=dict)
    ends: dict[str, list[dict]] = field(default_factory=dict)
    callbacks: list[dict] = field(default_factory=list)

    def completions(self, key: str) -> int:
        return len(self.ends.get(key, []))

    def duplicates(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.ends.items() if len(v) > 1}

    def to_obs(self) -> dict[str, Any]:
        return {
            "member_starts": {k: [round(e["mono"], 3) for e in v] for k, v in self.starts.items()},
            "member_ends": {k: [round(e["mono"], 3) for e in v] for k, v in self.ends.items()},
            "member_start_pids": {k: [e["pid"] for e in v] for k, v in self.starts.items()},
            "member_partial": {k: [bool(e.get("partial")) for e in v] for k, v in self.ends.items()},
            "callbacks": [{"mono": round(c["mono"], 3), "received": c.get("received")} for c in self.callbacks],
        }


def ledger(events: list[dict]) -> Ledger:
    out = Ledger()
    for event in select(events, "exec_start"):
        out.starts.setdefault(event.get("key"), []).append(event)
    for event in select(events, "exec_end"):
        out.ends.setdefault(event.get("key"), []).append(event)
    out.callbacks = select(events, "callback")
    return out


def send_chord(ctx, durations: list[float]) -> list[str]:
    from celery import chord

    app = ctx.client()
    header = [app.signature("lab.member", args=(i, d), queue=ctx.queue) for i, d in enumerate(durations)]
    body = app.signature("lab.collect", queue=ctx.queue)
    result = chord(header, body, app=app).apply_async(queue=ctx.queue)
    parent = getattr(result, "parent", None)
    return [r.id for r in getattr(parent, "results", []) or []]


def callback_verdict_facts(obs: dict[str, Any], members: int) -> dict[str, Any]:
    """Facts every chord checker needs: firings, input correctness, duplicates."""
    callbacks = obs.get("callbacks") or []
    expected = list(range(members))
    wrong = [c["received"] for c in callbacks if sorted(c.get("received") or []) != expected]
    dup_members = {k: len(v) for k, v in (obs.get("member_ends") or {}).items() if len(v) > 1}
    return {"fired": len(callbacks), "wrong_inputs": wrong, "duplicate_members": dup_members}
