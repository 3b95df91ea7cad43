"""How a worker start ended: ready, failed loudly, exited silently, or hung (a package).

Contract: one classifier for the silent-exit scenario and for
`lab diagnose -- <worker command>`. `analyze_output(text)` reads a worker's
output (banner, task list, `ready.` line, shutdown lines, lines at WARNING+,
known signatures); `classify_start(facts)` turns those plus the process facts
(ready confirmed, exit code or signal, leftovers, bound) into a StartClass:
  ready          reached ready and was still alive `confirm` seconds later;
  failed-loudly  exited before ready, non-zero, and something at WARNING+ said why;
  silent-exit    exited before ready with status 0, or with nothing at WARNING+;
  hang           neither ready nor exited within the bound (with or without output).
`diagnose_command(argv)` runs a user's own command in a session of its own,
with default signal dispositions (as a container runtime starts it: a
SIG_IGN inherited from a shell's `&` or nohup would hide early signals),
with the output captured (bounded: head and tail kept) and every descendant
tracked (this process becomes a child subreaper, so backgrounded or
--detach'ed workers stay visible), waits for ready / exit / the bound,
stops what is left (TERM, then KILL) and returns the facts and the class.
Readiness comes from the output only (`ready.` at INFO or `celery@... ready`)
and from the process state — a user's app has no journal. Hints are
heuristics over the evidence, never an input to the class. No Celery import.

Modules: classify (analyze_output, classify_start, StartClass), hints (the
hint texts: data), command (diagnose_command, render, the signal helpers
scenarios share). Every name importers used from the former single module is
re-exported here.
"""

from __future__ import annotations

from lab.diagnose.classify import (BANNER, BENIGN, EXTRA_LOUD, PENDING_GRACE_S, PENDING_SHUTDOWN, READY_LINE,
                                   SHUTDOWN_LINE, TASK_LIST, StartClass, analyze_output, classify_start,
                                   describe_exit)
from lab.diagnose.command import (DEFAULT_SIGNALS_SHIM, EXIT_CODES, HEAD_BYTES, RESET_SIGNALS, TAIL_BYTES,
                                  BoundedOutput, Tracker, become_subreaper, default_signals, diagnose_command,
                                  ignored_signals, render)
from lab.diagnose.hints import CLASS_HINTS, HINT_ALIASES, PATTERN_HINTS, hint_keys

__all__ = ["BANNER", "BENIGN", "CLASS_HINTS", "DEFAULT_SIGNALS_SHIM", "EXIT_CODES", "EXTRA_LOUD", "HEAD_BYTES",
           "HINT_ALIASES", "PATTERN_HINTS", "PENDING_GRACE_S", "PENDING_SHUTDOWN", "READY_LINE", "RESET_SIGNALS",
           "SHUTDOWN_LINE", "TAIL_BYTES", "TASK_LIST", "BoundedOutput", "StartClass", "Tracker", "analyze_output",
           "become_subreaper", "classify_start", "default_signals", "describe_exit", "diagnose_command",
           "hint_keys", "ignored_signals", "render"]
