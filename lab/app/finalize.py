"""The seed-001 mitigation, worker side: finalize in-flight work on shutdown.

Contract (loaded with LAB_APP_MODULES=lab.app.finalize): on
worker_shutting_down the master raises a flag file next to the journal;
tasks poll `shutdown_requested()` and return their partial result early
through the normal completion path, so a chord proceeds. The flag is
cleared at worker_init, so a stale flag from an earlier worker never stops
a task. File-based because it must cross the prefork master/child boundary.
"""

from __future__ import annotations

import os

from celery import signals

from lab.journal import JOURNAL_ENV, write_event


def flag_path() -> str | None:
    journal = os.environ.get(JOURNAL_ENV)
    return journal + ".shutdown-flag" if journal else None


def shutdown_requested() -> bool:
    path = flag_path()
    return bool(path) and os.path.exists(path)


@signals.worker_init.connect(weak=False)
def _clear_flag(**_):
    path = flag_path()
    if path and os.path.exists(path):
        os.unlink(path)


@signals.worker_shutting_down.connect(weak=False)
def _raise_flag(sig=None, how=None, **_):
    path = flag_path()
    if path:
        with open(path, "w") as fh:
            fh.write(f"{sig} {how}\n")
        write_event("finalize_flag_raised", sig=str(sig), how=str(how))
