"""The chord workload eviction and chord-stall scenarios share, and its ledger.

Contract: `send_chord(ctx, durations)` sends one chord whose member i sleeps
durations[i] and returns i, with `lab.collect` as callback, and returns the
member task ids; `dispatch_chord` sends the same chord (optionally with
per-member signature options, e.g. a time limit, and optionally an errback
on the body) and returns the member, body and group ids. `ledger(events)` reads the journal back into per-member
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


def dispatch_chord(ctx, durations: list[float], member_options: dict[int, dict[str, Any]] | None = None,
                   errback: bool = False) -> dict[str, Any]:
    from celery import chord

    app = ctx.client()
    member_options = member_options or {}
    header = [app.signature("lab.member", args=(i, d), queue=ctx.queue, **member_options.get(i, {}))
              for i, d in enumerate(durations)]
    # errback: `lab.churn` linked to the body runs once per chord error Celery delivers, journaled
    # as an execution whose key is the body's id (old-style errbacks get the failed task's id)
    links = {"link_error": [app.signature("lab.churn", queue=ctx.queue)]} if errback else {}
    body = app.signature("lab.collect", queue=ctx.queue, **links)
    result = chord(header, body, app=app).apply_async(queue=ctx.queue)
    parent = getattr(result, "parent", None)
    return {"member_ids": [r.id for r in getattr(parent, "results", []) or []],
            "body_id": result.id, "group_id": getattr(parent, "id", None)}


def send_chord(ctx, durations: list[float]) -> list[str]:
    return dispatch_chord(ctx, durations)["member_ids"]


def callback_verdict_facts(obs: dict[str, Any], members: int) -> dict[str, Any]:
    """Facts every chord checker needs: firings, input correctness, duplicates."""
    callbacks = obs.get("callbacks") or []
    expected = list(range(members))
    wrong = [c["received"] for c in callbacks if sorted(c.get("received") or []) != expected]
    dup_members = {k: len(v) for k, v in (obs.get("member_ends") or {}).items() if len(v) > 1}
    return {"fired": len(callbacks), "wrong_inputs": wrong, "duplicate_members": dup_members}
