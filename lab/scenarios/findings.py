"""Findings several judges read the same way from the same observations (pure).

Contract: `crash_findings(obs)` turns up to `limit` bug-severity signatures the
worker's log showed (obs["signatures"], lab.signatures.classify) into crash
Findings, which head an outcome (lab.verdict.HEADLINE_ORDER).
`exit_findings(obs, hang, ended)` says how the master ended: `shutdown-hang`
(no exit: obs["exit_code"] is None), `unclean-exit:<signal|code>` (not 0),
`orphaned-children` (obs["orphans"]); `hang` and `ended` are the words for the
first two ("{desc}" is replaced by obs["exit_desc"]).
"""

from __future__ import annotations

from typing import Any

from lab.verdict import Finding, Verdict


def crash_findings(obs: dict[str, Any], limit: int = 3) -> list[Finding]:
    return [Finding(Verdict.BUG, m["name"], f"traceback: {m['title']}", {"evidence": m["excerpt"][:1500]}, True)
            for m in [m for m in obs.get("signatures") or [] if m["severity"] == "bug"][:limit]]


def exit_findings(obs: dict[str, Any], hang: str, ended: str, hang_evidence: str = "") -> list[Finding]:
    out = []
    if obs.get("exit_code") is None:
        out.append(Finding(Verdict.HANG, "shutdown-hang", hang, {"evidence": hang_evidence} if hang_evidence else {}))
    elif obs["exit_code"] != 0:
        out.append(Finding(Verdict.BUG, f"unclean-exit:{obs.get('exit_signal') or obs['exit_code']}",
                           ended.replace("{desc}", str(obs.get("exit_desc")))))
    if obs.get("orphans"):
        out.append(Finding(Verdict.BUG, "orphaned-children", f"{len(obs['orphans'])} process(es) outlived the master",
                           {"evidence": repr(obs["orphans"])}))
    return out
