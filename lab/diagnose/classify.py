"""How a worker start ended: ready, failed loudly, exited silently, or hung.

Contract: `analyze_output(text)` reads a worker's output (banner, task list,
`ready.` line, shutdown lines, lines at WARNING+, known signatures, hint
keys); `classify_start(facts)` turns those plus the process facts (ready
confirmed, exit code or signal, leftovers, bound) into a StartClass:
  ready          reached ready and was still alive `confirm` seconds later;
  failed-loudly  exited before ready, non-zero, and something at WARNING+ said why;
  silent-exit    exited before ready with status 0, or with nothing at WARNING+;
  hang           neither ready nor exited within the bound (with or without output).
The class's causes come from lab.diagnose.hints (data). No Celery import.
"""

from __future__ import annotations

import re
import signal
from dataclasses import asdict, dataclass, field
from typing import Any

from lab import signatures
from lab.diagnose.hints import CLASS_HINTS, HINT_ALIASES, PATTERN_HINTS, hint_keys
from lab.verdict import Verdict

READY_LINE = re.compile(r"(?:INFO/MainProcess\].*\bready\.\s*$|\bcelery@\S+ ready\b|\S+@\S+ ready\.\s*$)", re.M)
BANNER = re.compile(r"^\s*(?:-+\s*)?\S+@\S+ v\d+\.\d+|\.> transport:", re.M)
TASK_LIST = re.compile(r"^\[tasks\]\s*$", re.M)
SHUTDOWN_LINE = re.compile(r"worker: (?:Warm|Cold|Soft) shutdown|Hitting Ctrl\+C|Restarting celery worker")
# At WARNING+ but explains nothing about a failing start (every root or legacy-config run prints them).
BENIGN = re.compile(r"SecurityWarning|superuser privileges|PendingDeprecationWarning|DeprecationWarning|"
                    r"celery upgrade settings|Please specify a different user")
EXTRA_LOUD = re.compile(r"^(?:Fatal Python error|Segmentation fault|Killed$|[\w.]*(?:Error|Exception)(?::|$))")

PENDING_SHUTDOWN = re.compile(r"worker: (?:Warm|Cold|Soft) shutdown")
PENDING_GRACE_S = 8.0  # a shutdown requested during start-up: time it gets to take effect after ready
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 256 * 1024


def analyze_output(text: str) -> dict[str, Any]:
    """Facts read from a worker's output (stdout and stderr interleaved)."""
    lines = text.splitlines()
    loud = signatures.loud_lines(text)
    loud += [l for l in lines if EXTRA_LOUD.match(l.strip()) and l not in loud]
    explaining = [l for l in loud if not BENIGN.search(l)]
    ready = READY_LINE.search(text)
    return {
        "banner_seen": bool(BANNER.search(text)),
        "tasks_seen": bool(TASK_LIST.search(text)),
        "ready_line": ready.group(0).strip()[:200] if ready else None,
        "shutdown_lines": [l.strip() for l in lines if SHUTDOWN_LINE.search(l)][-4:],
        "loud_lines": [l[:300] for l in loud][-12:],
        "explaining_lines": [l[:300] for l in explaining][-12:],
        "signatures": [m.to_dict() for m in signatures.classify(text)],
        "hint_keys": hint_keys(text),
        "tail": "\n".join(lines[-30:]),
        "output_bytes": len(text.encode(errors="replace")),
    }


@dataclass
class StartClass:
    klass: str          # ready | failed-loudly | silent-exit | hang
    sub: str            # the finer class (a key of CLASS_HINTS)
    verdict: str        # lab verdict value: pass | silent-exit | hang
    summary: str
    causes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_exit(code: int | None, sig: str | None) -> str:
    if code is None:
        return "still running"
    if sig:
        return f"killed by {sig}"
    if code > 128 and code - 128 < 65:
        try:
            return f"exit {code} (128+{signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit {code}"


def classify_start(facts: dict[str, Any]) -> StartClass:
    """The class of a start from process facts plus analyze_output() facts."""
    exit_code, sig = facts.get("exit_code"), facts.get("exit_signal")
    explaining = facts.get("explaining_lines") or []
    banner = facts.get("banner_seen")
    leftovers = facts.get("leftovers") or []
    how = describe_exit(exit_code, sig)
    if facts.get("ready") and facts.get("shutdown_ignored"):
        klass, sub, verdict = "ready", "ready-shutdown-ignored", Verdict.PASS
        summary = (f"reached ready in {facts.get('ready_s', 0):.1f}s and stayed up although a shutdown "
                   f"was requested during start-up ({(facts.get('shutdown_lines') or ['journal'])[-1]})")
    elif facts.get("ready"):
        klass, sub, verdict = "ready", "ready", Verdict.PASS
        summary = f"reached ready in {facts.get('ready_s', 0):.1f}s and stayed up"
    elif exit_code is None:
        klass, verdict = "hang", Verdict.HANG
        if explaining:
            sub = "hang-retrying"
            summary = (f"neither ready nor exited within {facts.get('bound_s', 0):.0f}s; "
                       f"it keeps saying: {_msg(explaining[-1])}")
        else:
            sub = ("hang-no-output" if not facts.get("output_bytes") else
                   "hang-silent-after-banner" if banner else "hang-silent")
            summary = (f"neither ready nor exited within {facts.get('bound_s', 0):.0f}s, nothing at WARNING+ "
                       f"({'banner shown' if banner else 'no banner'}; last output "
                       f"{_age(facts.get('last_output_age_s'))})")
    elif exit_code == 0 or not explaining:
        klass, verdict = "silent-exit", Verdict.SILENT_EXIT
        if exit_code == 0 and leftovers:
            sub = "exit0-worker-left-running"
        elif exit_code == 0 and explaining:
            sub = "exit0-errors-logged"
        elif exit_code == 0 and facts.get("shutdown_lines"):
            sub = "exit0-shutdown-line"
        elif exit_code == 0 and facts.get("ready_seen"):
            sub = "exit0-after-ready"
        elif exit_code == 0:
            sub = "exit0-after-banner" if banner else "exit0-before-banner"
        elif sig or (exit_code > 128 and not facts.get("output_bytes")):
            sub = "killed"
        elif facts.get("shutdown_lines"):
            sub = "nonzero-shutdown-line"
        else:
            sub = "nonzero-silent"
        said = (f"; the log said: {_msg(explaining[-1])}" if explaining else
                f"; only: {facts['shutdown_lines'][-1]}" if facts.get("shutdown_lines") else
                "; nothing at WARNING or above")
        when = (f"{facts['elapsed_s'] - facts['ready_s']:.1f}s after its ready line"
                if facts.get("ready_seen") and facts.get("ready_s") is not None and facts.get("elapsed_s")
                else f"before ready, {'after' if banner else 'before'} the banner")
        summary = f"exited {when} ({how} after {facts.get('elapsed_s', 0):.1f}s){said}"
    else:
        klass, sub, verdict = "failed-loudly", "failed-loudly", Verdict.PASS
        summary = (f"failed loudly before ready ({how} after {facts.get('elapsed_s', 0):.1f}s): "
                   f"{_msg(explaining[-1])}")
    if leftovers and klass != "ready":
        summary += f"; {len(leftovers)} process(es) still running after the command exited"
    causes = [CLASS_HINTS[HINT_ALIASES.get(sub, sub)]]
    causes += [text for key, _, text in PATTERN_HINTS if key in (facts.get("hint_keys") or [])]
    return StartClass(klass, sub, verdict.value, summary, causes)


def _msg(line: str, limit: int = 160) -> str:
    """A log line without its `[date: LEVEL/Process]` prefix, shortened."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _age(age: float | None) -> str:
    return "never" if age is None else f"{age:.1f}s before the watch ended"
