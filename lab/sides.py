"""Did the scenario run at all? Setup failures, and honest sides for triage and bisect.

Contract: `setup_failed_outcome(summary, evidence)` is the Outcome of a cell
whose scenario never ran because install, import or provisioning failed:
verdict `setup-failed` (signature setup:install / setup:import). `transport_probe(broker_url, backend_url)` imports the
kombu transport and the Celery result backend a cell needs, in the cell's
own venv, and returns None or the exception that stopped it (no network
I/O). `never_ran(record)` returns why a record says nothing about the
scenario — its verdict is error, n/a or setup-failed; no attempt's worker
reached ready (start-up scenarios aside); or the log shows an import error
of the transport — or None when the scenario ran. Such a side is never good
or bad. Standard library only.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

from lab.verdict import Outcome, Verdict

SETUP_FAILED = "setup-failed"
NEVER_RAN_VERDICTS = ("error", "n/a", SETUP_FAILED)
# scenarios whose subject is the start itself: a worker that never became ready is their finding
START_SCENARIOS = ("silent-exit",)
IMPORT_ERROR = re.compile(r"(ModuleNotFoundError|ImportError)|unknown:(ModuleNotFoundError|ImportError)"
                          r"|unrecoverable:(ModuleNotFoundError|ImportError)|VersionMismatch")


def setup_failed_outcome(summary: str, evidence: Dict[str, Any] | None = None,
                         signature: str = "setup:import") -> Outcome:
    """The scenario never ran: install ("setup:install"), import ("setup:import") or provisioning failed."""
    try:
        verdict = Verdict(SETUP_FAILED)
    except ValueError:  # a lab.verdict without the verdict: `error`, still named as a setup failure
        verdict = Verdict.ERROR
    return Outcome(verdict, summary, signature, {"key_figure": "setup failed"}, dict(evidence or {}))


def transport_probe(broker_url: str, backend_url: str) -> Optional[str]:
    """None, or 'kombu transport for redis://...: ModuleNotFoundError: ...' (imports only)."""
    try:
        from kombu import Connection
        conn = Connection(broker_url)
        try:
            conn.transport  # noqa: B018 - imports the transport module and checks its client library
        finally:
            conn.release()
    except Exception as exc:  # the transport cannot even be imported: the worker could not start
        return f"kombu transport for {broker_url.split(':', 1)[0]}: {type(exc).__name__}: {exc}"
    if backend_url:
        try:
            from celery.app.backends import by_url
            by_url(backend_url)
        except Exception as exc:
            return f"celery result backend {backend_url.split(':', 1)[0]}: {type(exc).__name__}: {exc}"
    return None


def _signatures(record) -> list:
    outcome = record.outcome
    names = [outcome.signature] + [r.get("signature") for r in outcome.metrics.get("rates") or []
                                   if isinstance(r, dict)]
    return [n for n in names if n]


def never_ran(record) -> Optional[str]:
    """Why this record says nothing about its scenario, or None when the scenario ran."""
    outcome = record.outcome
    verdict = getattr(outcome.verdict, "value", outcome.verdict)
    sigs = _signatures(record)
    if verdict in NEVER_RAN_VERDICTS or any(s == SETUP_FAILED or s.startswith("setup:") for s in sigs):
        return f"{verdict}: {outcome.summary}"
    ready = (record.environment or {}).get("attempts_ready")
    scenario = (record.cell or {}).get("scenario")
    if isinstance(ready, list) and ready and not any(ready) and scenario not in START_SCENARIOS:
        return (f"the worker never reached ready in any of {len(ready)} attempt(s) "
                f"({outcome.signature or verdict}: {outcome.summary})")
    text = " ".join([*sigs, outcome.summary, str(outcome.evidence.get("traceback", ""))])
    if IMPORT_ERROR.search(text) and re.search(r"kombu[/.]transport|transport", text, re.I):
        return f"the worker could not import its transport ({outcome.signature}: {outcome.summary})"
    return None
