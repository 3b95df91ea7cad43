"""Worker-side faults for the shutdown-race scenario, armed by LAB_RACE_* only.

Contract: loaded into the master (and inherited by forked pool children)
through LAB_APP_MODULES=lab.app.race_hooks. Nothing happens unless a
LAB_RACE_* variable asks for it; every injection is journaled *before* it
acts (a signal handler may raise and never give control back).

  LAB_RACE_POINT        named point of pool repopulation where the master
                        signals itself; the entry is Celery's own
                        `worker_before_create_process` signal (sender: the pool):
    before-create       in the receiver itself: the new process does not exist
                        yet (a control: outside the race window);
    registering         the new process is already in pool._pool but not yet
                        forked (`_popen` is None): reached when the pool calls
                        `_process_register_queues`, the line after the append;
    up                  forked, but the pool has not yet tracked its sentinel
                        (`_sentinel_poll` unset): reached at `on_process_up`;
    reaping             the next time the pool reaps an exited child, inside
                        `_join_exited_workers`' loop over pool._pool, just
                        before it deletes index i: reached at its call of
                        `process_flush_queues`.
  LAB_RACE_SIGNAL       signal the master sends itself there (QUIT, TERM, ...).
  LAB_RACE_KILL_CHILD   "1": SIGKILL the new child first (point `up` only).
  LAB_RACE_SKIP         child creations after worker_ready to let pass first.
  LAB_RACE_CHILD_INIT_SLEEP  "lo,hi": every pool child sleeps uniform(lo, hi)
                        seconds in worker_process_init (slow start, seed 004).

The named points after the receiver are reached with a one-shot profiler
(sys.setprofile) that the receiver installs in the creating thread and that
removes itself at the point or (points inside the creation) when the
creation returns: Celery's code is neither patched nor wrapped. Standard
library + celery only.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
import traceback

from celery import signals

from lab.journal import write_event

POINTS = ("before-create", "registering", "up", "reaping")
# point -> (function whose call is the point, its required caller, stays armed past the creation)
TRAPS = {"registering": ("_process_register_queues", None, False),
         "up": ("on_process_up", None, False),
         "reaping": ("process_flush_queues", "_join_exited_workers", True)}
CREATOR = "_create_worker_process"
STACK_DEPTH = 16

POINT = os.environ.get("LAB_RACE_POINT", "")
SIGNAL = os.environ.get("LAB_RACE_SIGNAL", "QUIT")
KILL_CHILD = os.environ.get("LAB_RACE_KILL_CHILD", "") == "1"
SKIP = int(os.environ.get("LAB_RACE_SKIP", "0") or 0)
CHILD_INIT_SLEEP = os.environ.get("LAB_RACE_CHILD_INIT_SLEEP", "")

_state = {"ready": False, "creations": 0, "fired": False, "master": os.getpid()}
_lock = threading.Lock()


def _safe(event: str, **fields) -> None:
    try:
        write_event(event, **fields)
    except Exception:  # the journal must never change what is observed
        pass


def _signum(name: str) -> int:
    name = name.upper()
    return getattr(signal, name if name.startswith("SIG") else "SIG" + name)


def _proc_state(pool, proc) -> dict:
    if proc is None:
        return {}
    return {"child_pid": getattr(proc, "pid", None),
            "in_pool": any(p is proc for p in getattr(pool, "_pool", []) or []),
            "forked": getattr(proc, "_popen", None) is not None,
            "sentinel_tracked": hasattr(proc, "_sentinel_poll")}


def _stack() -> list[str]:
    """Where the signal lands: the interrupted frames of the master, outermost first."""
    try:
        frames = traceback.extract_stack(sys._getframe(2))
        return [f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} {f.name}"
                for f in frames][-STACK_DEPTH:]
    except Exception as exc:  # evidence only: never disturb the injection
        return [f"stack unavailable: {exc!r}"]


def _checkpoint() -> None:
    pass


def _fire(pool, point: str, proc=None, **extra) -> None:
    """Journal, optionally kill the new child, then signal the master (self)."""
    killed = None
    if KILL_CHILD and proc is not None and getattr(proc, "pid", None):
        killed = proc.pid
    _safe("race_inject", point=point, signal=SIGNAL, kill_child=killed,
          creation=_state["creations"], thread=threading.current_thread().name,
          pool=type(pool).__name__, stack=_stack(), **_proc_state(pool, proc), **extra)
    if killed:
        try:
            os.kill(killed, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.kill(os.getpid(), _signum(SIGNAL))
        for _ in range(100):  # Python runs the handler at the next eval-breaker check:
            _checkpoint()     # a call, here, inside this try, not in a journal write
    except BaseException as exc:  # raised by Celery's handler, here: journal, re-raise
        _safe("race_inject_raised", point=point, exception=repr(exc),
              traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:])
        raise
    # Reached only if the signal handler returned normally (a warm flag, or a
    # cold shutdown that did not raise): the pool goes on creating the child.
    _safe("race_inject_returned", point=point, **_proc_state(pool, proc))


def _arm_profiler(pool, point: str) -> None:
    target, caller, persist = TRAPS[point]
    if persist and sys.getprofile() is not None:
        return  # already waiting for the point
    creator = sys._getframe(0)
    while creator is not None and creator.f_code.co_name != CREATOR:
        creator = creator.f_back

    def trap(frame, event, arg):
        if event == "call" and frame.f_code.co_name == target and (
                caller is None or (frame.f_back and frame.f_back.f_code.co_name == caller)):
            sys.setprofile(None)
            _state["fired"] = True
            loc, extra = frame.f_locals, {}
            if caller:  # where the caller stands in its loop over pool._pool
                extra = {"index": frame.f_back.f_locals.get("i"),
                         "pool_size": len(getattr(pool, "_pool", []) or [])}
            _fire(pool, point, loc.get("proc") or loc.get("worker") or loc.get("w"), **extra)
        elif event == "return" and frame is creator and not persist:
            sys.setprofile(None)  # the creation ended without the point: re-arm next time
            _safe("race_point_missed", point=point, creation=_state["creations"], function=target)

    sys.setprofile(trap)


def _before_create(sender=None, **_):
    with _lock:
        if os.getpid() != _state["master"] or not _state["ready"] or _state["fired"]:
            return
        _state["creations"] += 1
        if _state["creations"] <= SKIP:
            return
    if POINT == "before-create":
        _state["fired"] = True
        _fire(sender, POINT)
    else:
        _arm_profiler(sender, POINT)


def _ready(sender=None, **_):
    _state["ready"] = True


def _slow_child(sender=None, **_):
    lo, _, hi = CHILD_INIT_SLEEP.partition(",")
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    seconds = rng.uniform(float(lo), float(hi or lo))
    _safe("race_slow_child", sleep=round(seconds, 3))
    time.sleep(seconds)


def install() -> dict:
    """Connect what the environment asks for; journal the configuration."""
    config = {"point": POINT, "signal": SIGNAL, "kill_child": KILL_CHILD, "skip": SKIP,
              "child_init_sleep": CHILD_INIT_SLEEP}
    if POINT:
        if POINT not in POINTS:
            raise ValueError(f"LAB_RACE_POINT={POINT!r}; allowed: {', '.join(POINTS)}")
        hook = getattr(signals, "worker_before_create_process", None)
        if hook is None:
            _safe("race_hook_missing", hook="worker_before_create_process", **config)
        else:
            hook.connect(_before_create, weak=False)
            signals.worker_ready.connect(_ready, weak=False)
    if CHILD_INIT_SLEEP:
        signals.worker_process_init.connect(_slow_child, weak=False)
    _safe("race_armed", **config)
    return config


install()
