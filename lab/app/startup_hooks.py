"""Worker-side start-up hooks: reach a named start-up moment, then act.

Contract: loaded through LAB_APP_MODULES=lab.app.startup_hooks. When
LAB_STARTUP_MOMENT names a moment and LAB_STARTUP_ACTION an action, the
first process of this worker (LAB_WORKER_ID) to reach that moment journals
`startup_hook` (moment, action, the mechanism used, the Python-level handler
currently installed for the signal) and then acts: `SIGTERM`, `SIGINT`,
`SIGQUIT` or `SIGHUP` is `os.kill(os.getpid(), sig)` (so Celery's own
handler, or the default action, decides what happens); `exit0` raises
SystemExit(0), as app code calling sys.exit() would. If the process is
still running right after the kill, `startup_hook_returned` is journaled.
The hook fires at most once per worker (an O_EXCL marker file), so a worker
that re-executes itself (SIGHUP restart) starts clean the second time.

Moments, in start-up order:
  init      celeryd_init: before the banner, before Celery installs handlers
  setup     celeryd_after_setup: logging configured, before the banner and handlers
  pool      during the pool's start, handlers installed: prefork
            worker_before_create_process (master, before forking a child),
            eventlet eventlet_pool_started, other pools BasePool.start (before
            on_start) — the journal names which
  consumer  a worker bootstep that requires Pool: pool started, banner shown,
            consumer not yet started
  connect   Consumer.connect, just before the broker connection is made
Never raises into Celery except the SystemExit the `exit0` action asks for.
"""

from __future__ import annotations

import os
import signal as _signal

from celery import bootsteps, signals

from lab.app.celery_app import app
from lab.journal import JOURNAL_ENV, write_event

MOMENT_ENV = "LAB_STARTUP_MOMENT"
ACTION_ENV = "LAB_STARTUP_ACTION"
MOMENTS = ("init", "setup", "pool", "consumer", "connect")
ACTIONS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "exit0")

MOMENT = os.environ.get(MOMENT_ENV, "")
ACTION = os.environ.get(ACTION_ENV, "")


def _claim() -> bool:
    """True for the first caller of this worker (an O_EXCL marker next to the journal)."""
    journal = os.environ.get(JOURNAL_ENV)
    if not journal:
        return False
    marker = f"{journal}.hook-{os.environ.get('LAB_WORKER_ID', 'worker')}"
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        return True
    except OSError:
        return False


def _handler_name(sig: int) -> str:
    try:
        handler = _signal.getsignal(sig)
    except (ValueError, OSError):
        return "unknown"
    if handler is _signal.SIG_DFL:
        return "SIG_DFL"
    if handler is _signal.SIG_IGN:
        return "SIG_IGN"
    if handler is None:
        return "not-from-python"
    return getattr(handler, "__name__", repr(handler))


def _safe_event(event: str, **fields) -> None:
    try:
        write_event(event, **fields)
    except Exception:
        pass


def fire(moment: str, via: str) -> None:
    if moment != MOMENT or ACTION not in ACTIONS or not _claim():
        return
    sig = getattr(_signal, ACTION, None) if ACTION.startswith("SIG") else None
    _safe_event("startup_hook", moment=moment, action=ACTION, via=via,
                handler=_handler_name(sig) if sig else None,
                worker_id=os.environ.get("LAB_WORKER_ID"))
    if ACTION == "exit0":
        raise SystemExit(0)
    os.kill(os.getpid(), sig)
    _safe_event("startup_hook_returned", moment=moment, action=ACTION)


if MOMENT in MOMENTS and ACTION in ACTIONS:

    @signals.celeryd_init.connect(weak=False)
    def _on_celeryd_init(sender=None, **_):
        fire("init", "celeryd_init")

    @signals.celeryd_after_setup.connect(weak=False)
    def _on_after_setup(sender=None, **_):
        fire("setup", "celeryd_after_setup")

    if MOMENT == "pool":
        _before_create = getattr(signals, "worker_before_create_process", None)
        if _before_create is not None:
            @_before_create.connect(weak=False)
            def _on_before_create(sender=None, **_):
                fire("pool", "worker_before_create_process")

        _eventlet_started = getattr(signals, "eventlet_pool_started", None)
        if _eventlet_started is not None:
            @_eventlet_started.connect(weak=False)
            def _on_eventlet_started(sender=None, **_):
                fire("pool", "eventlet_pool_started")

        from celery.concurrency import base as _pool_base

        _original_start = _pool_base.BasePool.start

        def _start(self, *args, **kwargs):
            module = type(self).__module__
            if not module.endswith((".prefork", ".eventlet")) or (
                    module.endswith(".prefork") and _before_create is None):
                fire("pool", f"BasePool.start({type(self).__module__.rsplit('.', 1)[-1]})")
            return _original_start(self, *args, **kwargs)

        _pool_base.BasePool.start = _start

    if MOMENT == "consumer":
        class LabPreConsumerProbe(bootsteps.StartStopStep):
            """Started right after the pool, before the consumer (which is always last)."""

            label = "lab-pre-consumer-probe"
            requires = ("celery.worker.components:Pool",)

            def start(self, parent):
                fire("consumer", "bootstep after Pool")

        app.steps["worker"].add(LabPreConsumerProbe)

    if MOMENT == "connect":
        from celery.worker.consumer import consumer as _consumer_mod

        _original_connect = _consumer_mod.Consumer.connect

        def _connect(self, *args, **kwargs):
            fire("connect", "Consumer.connect")
            return _original_connect(self, *args, **kwargs)

        _consumer_mod.Consumer.connect = _connect
