"""Journal handlers on Celery's lifecycle signals (master and pool children).

Contract: connecting is idempotent and uses only signals present in every
Celery 5.x; each handler writes one journal event and never raises into
Celery (a failing journal write must not change the behaviour observed).
"""

from __future__ import annotations

from celery import signals

from lab.journal import write_event


def _safe(event: str, **fields) -> None:
    try:
        write_event(event, **fields)
    except Exception:  # never disturb the worker under test
        pass


def _task_name(task) -> str | None:
    return getattr(task, "name", None) if task is not None else None


@signals.worker_init.connect(weak=False)
def _worker_init(sender=None, **_):
    _safe("worker_init")


@signals.worker_ready.connect(weak=False)
def _worker_ready(sender=None, **_):
    _safe("worker_ready")


@signals.worker_shutting_down.connect(weak=False)
def _worker_shutting_down(sender=None, sig=None, how=None, exitcode=None, **_):
    _safe("worker_shutting_down", sig=str(sig), how=str(how), exitcode=exitcode)


@signals.worker_shutdown.connect(weak=False)
def _worker_shutdown(sender=None, **_):
    _safe("worker_shutdown")


@signals.worker_process_init.connect(weak=False)
def _child_init(sender=None, **_):
    _safe("child_init")


@signals.worker_process_shutdown.connect(weak=False)
def _child_shutdown(sender=None, pid=None, exitcode=None, **_):
    _safe("child_shutdown", exitcode=exitcode)


@signals.task_received.connect(weak=False)
def _task_received(sender=None, request=None, **_):
    _safe("task_received", task_id=getattr(request, "id", None), task=getattr(request, "name", None))


@signals.task_prerun.connect(weak=False)
def _task_prerun(sender=None, task_id=None, task=None, **_):
    _safe("task_prerun", task_id=task_id, task=_task_name(task))


@signals.task_postrun.connect(weak=False)
def _task_postrun(sender=None, task_id=None, task=None, state=None, **_):
    _safe("task_postrun", task_id=task_id, task=_task_name(task), state=state)


@signals.task_failure.connect(weak=False)
def _task_failure(sender=None, task_id=None, exception=None, **_):
    _safe("task_failure", task_id=task_id, task=_task_name(sender), exception=repr(exception))


@signals.task_revoked.connect(weak=False)
def _task_revoked(sender=None, request=None, terminated=None, signum=None, expired=None, **_):
    _safe("task_revoked", task_id=getattr(request, "id", None), terminated=terminated,
          signum=str(signum), expired=expired)
