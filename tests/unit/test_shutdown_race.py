"""The shutdown-race checker is a pure function of observations; its plans are data."""

from __future__ import annotations

import json
import os
import signal
import sys
import types

import pytest

from lab import signatures
from lab.matrix import Cell
from lab.scenarios.base import CellContext
from lab.scenarios.race_faults import (Fault, JournalTail, Kind, Mode, Point, chained_failures, race_matches,
                                       signal_plan, worker_env)
from lab.scenarios.shutdown_race import SCENARIO
from lab.verdict import Verdict, aggregate

SENTINEL_LOG = """[2026-01-01 00:00:01,000: INFO/MainProcess] w@lab ready.
worker: Hitting Ctrl+C again will terminate all running tasks!
[2026-01-01 00:00:02,000: CRITICAL/MainProcess] Unrecoverable error: AttributeError("'ForkProcess' object has no attribute '_sentinel_poll'")
Traceback (most recent call last):
  File "/v/celery/worker/worker.py", line 203, in start
    self.blueprint.start(self)
  File "/v/celery/concurrency/asynpool.py", line 703, in on_process_down
    self._untrack_child_process(proc, hub)
  File "/v/celery/concurrency/asynpool.py", line 516, in _untrack_child_process
    if proc._sentinel_poll is not None:
AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'
"""

UNKNOWN_LOG = """[2026-01-01 00:00:02,000: ERROR/MainProcess] something odd
Traceback (most recent call last):
  File "/v/kombu/asynchronous/hub.py", line 465, in create_loop
    cb(*cbargs)
  File "/v/celery/concurrency/asynpool.py", line 640, in on_process_up
    fileno_to_outq[proc.outqR_fd] = proc
ZeroDivisionError: boom
"""


def obs(**over):
    base = {"mode": "targeted", "kind": "targeted", "point": "up", "faults": ["signal-master"],
            "plan": signal_plan({"LAB_RACE_SIGNALS": "QUIT"}), "pool": "prefork", "concurrency": 2,
            "seed": 100004, "skip": 1, "children_apply": True, "ready": True, "ready_s": 3.0,
            "point_reached": True, "worker_died_early": False, "exit_code": 0, "exit_signal": None,
            "exit_s": 1.5, "exit_desc": "exit 0 after 1.5s", "orphans": [], "log_tail": "", "loud_lines": [],
            "shutdown_lines": [], "signatures": [], "signals": [{"signal": "QUIT", "by": "master", "at_s": 1.2}],
            "children_started": 3, "tasks_done": 4, "slow_children": [], "point_missed": 0,
            "injection": {"point": "up", "signal": "QUIT", "kill_child": None, "creation": 2,
                          "thread": "MainThread", "in_pool": True, "forked": True,
                          "sentinel_tracked": False, "stack": []},
            "injection_returned": True, "race_signatures": [], "up_timeouts": 0,
            "attempt_s": 8.0, "cell_elapsed_s": 24.0}
    base.update(over)
    return base


CHAINED_TYPEERROR_LOG = """[2026-01-01 00:00:02,000: CRITICAL/MainProcess] Unrecoverable error: TypeError("'NoneType' object cannot be interpreted as an integer")
Traceback (most recent call last):
  File "/v/celery/concurrency/asynpool.py", line 503, in _track_child_process
    fd = proc._sentinel_poll
AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/v/celery/worker/worker.py", line 203, in start
    self.blueprint.start(self)
  File "/v/celery/concurrency/asynpool.py", line 509, in _track_child_process
    fd = proc._sentinel_poll = os.dup(proc._popen.sentinel)
TypeError: 'NoneType' object cannot be interpreted as an integer
[2026-01-01 00:00:02,100: INFO/MainProcess] Restoring 8 unacknowledged message(s)
"""

FINALIZER_LOG = """[2026-01-01 00:00:03,537: WARNING/MainProcess] Traceback (most recent call last):
[2026-01-01 00:00:03,537: WARNING/MainProcess]   File "/py/multiprocessing/util.py", line 300, in _run_finalizers
    finalizer()
[2026-01-01 00:00:03,538: WARNING/MainProcess]   File "/v/celery/concurrency/asynpool.py", line 703, in on_process_down
    self._untrack_child_process(proc, hub)
[2026-01-01 00:00:03,538: WARNING/MainProcess]   File "/v/celery/concurrency/asynpool.py", line 516, in _untrack_child_process
    if proc._sentinel_poll is not None:
       ^^^^^^^^^^^^^^^^^^^
[2026-01-01 00:00:03,538: WARNING/MainProcess] AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'
"""


def log_obs(text: str, **over):
    return obs(signatures=[m.to_dict() for m in signatures.classify(text)], log_tail=text,
               failures=chained_failures(text), **over)


def test_clean_shutdown_passes_with_figures():
    out = SCENARIO.judge(obs())
    assert out.verdict == Verdict.PASS and out.signature is None
    assert "exit 0 in 1.5s" in out.summary and "injected at up" in out.summary
    assert out.metrics["concurrency"] == 2 and out.metrics["seed"] == 100004
    assert out.metrics["signal_plan"] == "QUIT" and "time_to_repro_s" not in out.evidence


def test_sentinel_poll_is_the_named_bug_with_time_to_repro():
    out = SCENARIO.judge(log_obs(SENTINEL_LOG, exit_code=1, exit_desc="exit 1 after 1.0s"))
    assert out.verdict == Verdict.BUG and out.signature == "sentinel-poll-attributeerror"
    assert out.metrics["time_to_repro_s"] == 24.0 and out.evidence["time_to_repro_s"] == 24.0
    assert "_sentinel_poll" in out.evidence["traceback"]
    assert "unclean-exit:1" in out.evidence["other_findings"]


def test_a_chained_typeerror_is_not_the_sentinel_bug():
    """The _sentinel_poll text is only the chained context; the final exception decides."""
    assert [m.name for m in signatures.classify(CHAINED_TYPEERROR_LOG)] == [
        "unrecoverable:TypeError@asynpool.py:_track_child_process"]
    (failure,) = chained_failures(CHAINED_TYPEERROR_LOG)
    assert failure["name"] == "unrecoverable:TypeError@asynpool.py:_track_child_process"
    assert failure["contexts"] == ["AttributeError@asynpool.py:_track_child_process"]
    out = SCENARIO.judge(log_obs(CHAINED_TYPEERROR_LOG, exit_code=1))
    assert out.signature == "unrecoverable:TypeError@asynpool.py:_track_child_process"
    assert "sentinel-poll-attributeerror" not in out.metrics["findings"]


def test_a_traceback_printed_through_the_stderr_logger_is_read():
    assert signatures.tracebacks(FINALIZER_LOG) == []  # every line carries the log prefix
    out = SCENARIO.judge(log_obs(CHAINED_TYPEERROR_LOG + FINALIZER_LOG, exit_code=1))
    assert out.signature == "sentinel-poll-attributeerror"  # the seed's bug, named first
    assert out.metrics["findings"] == ["sentinel-poll-attributeerror",
                                       "unrecoverable:TypeError@asynpool.py:_track_child_process",
                                       "unclean-exit:1"]


def test_a_traceback_written_token_by_token_is_read():
    """sys.unraisablehook ('Exception ignored in') writes token by token: a log record each."""
    prefix = "[2026-01-01 00:00:03,415: WARNING/MainProcess] "
    tokens = ["Exception ignored in: ", "<function _releaseLock at 0x7f44>", "Traceback (most recent call last):",
              '  File "/py/logging/__init__.py", line 237, in _releaseLock', "    ", "def _releaseLock():",
              '  File "/v/celery/apps/worker.py", line 300, in _handle_request', "    ", "callback(worker)",
              '  File "/v/billiard/pool.py", line 1311, in _join_exited_workers', "    ",
              "del self._poolctrl[worker.pid]", " ", "~", "^", "KeyError", ": ", "None"]
    text = "".join(prefix + t + "\n" for t in tokens)
    (failure,) = chained_failures(text)
    assert failure["name"] == "unknown:KeyError@pool.py:_join_exited_workers"


def test_unknown_traceback_becomes_a_new_signature_never_a_pass():
    out = SCENARIO.judge(log_obs(UNKNOWN_LOG))
    assert out.verdict == Verdict.BUG
    assert out.signature == "unknown:ZeroDivisionError@asynpool.py:on_process_up"


def test_unrecoverable_error_is_named_by_type_and_frame():
    text = SENTINEL_LOG.replace("AttributeError", "OSError").replace("'ForkProcess' object has no", "no")
    out = SCENARIO.judge(log_obs(text, exit_code=1))
    assert out.signature == "unrecoverable:OSError@asynpool.py:_untrack_child_process"


def test_swallowed_exception_from_the_signal_handler_is_a_bug():
    raised = {"exception": "KeyError(None)", "type": "KeyError", "frame": "pool.py:_join_exited_workers",
              "traceback": "Traceback ...\nKeyError: None"}
    phantom = race_matches("[x: ERROR/MainProcess] Process 'ForkProcess-6' pid:None exited with 'exitcode None'\n")
    out = SCENARIO.judge(obs(injection_raised=raised, injection_returned=False, race_signatures=phantom))
    assert out.verdict == Verdict.BUG and out.signature == "swallowed:KeyError@pool.py:_join_exited_workers"
    assert out.evidence["other_findings"] == "phantom-process-exit"
    # the same exception, logged by Celery, is the logged signature, not "swallowed"
    logged = SCENARIO.judge(log_obs(SENTINEL_LOG, injection_raised={
        "exception": "AttributeError(...)", "type": "AttributeError", "frame": "asynpool.py:_untrack_child_process",
        "traceback": ""}))
    assert logged.signature == "sentinel-poll-attributeerror"
    # a shutdown exception raised by the handler is how Celery stops: not a finding
    assert SCENARIO.judge(obs(injection_raised={"exception": "WorkerTerminate(1)", "type": "WorkerTerminate",
                                                "frame": "", "traceback": ""})).verdict == Verdict.PASS


def test_hang_orphans_unclean_exit():
    hang = SCENARIO.judge(obs(exit_code=None, exit_s=None, exit_desc="still running after 20.0s",
                              hang_dump="MainThread\n=====\nFile \"pool.py\", line 1, in join",
                              hang_tree=[{"pid": 9, "status": "sleeping"}]))
    assert hang.verdict == Verdict.HANG and hang.signature == "shutdown-hang"
    assert "in join" in hang.evidence["hang_dump"] and "sleeping" in hang.evidence["hang_tree"]
    assert hang.metrics["findings"] == ["shutdown-hang"]
    loud_hang = SCENARIO.judge(log_obs(UNKNOWN_LOG, exit_code=None, exit_s=None, hang_dump=""))
    assert loud_hang.verdict == Verdict.BUG and loud_hang.signature.startswith("unknown:ZeroDivisionError")
    assert loud_hang.metrics["findings"][-1] == "shutdown-hang"
    assert hang.metrics["time_to_repro_s"] == hang.evidence["time_to_repro_s"] == 24.0
    orphans = SCENARIO.judge(obs(orphans=[{"pid": 5, "ppid": 1, "name": "python"}]))
    assert orphans.verdict == Verdict.BUG and orphans.signature == "orphaned-children"
    killed = SCENARIO.judge(obs(exit_code=-9, exit_signal="SIGKILL", exit_desc="killed by SIGKILL"))
    assert killed.verdict == Verdict.BUG and killed.signature == "unclean-exit:SIGKILL"
    early = SCENARIO.judge(obs(worker_died_early=True))
    assert early.verdict == Verdict.SILENT_EXIT


def test_up_timeout_is_a_bug_unless_slow_start_provoked_it():
    text = "[x: ERROR/MainProcess] Timed out waiting for UP message from <ForkProcess(ForkPoolWorker-3)>\n"
    assert SCENARIO.judge(log_obs(text)).signature == "timed-out-waiting-for-up"
    slow = SCENARIO.judge(log_obs(text, mode="slow-start", kind="slow-start", point=None, injection=None,
                                  up_timeouts=1))
    assert slow.verdict == Verdict.PASS and "1 UP timeouts provoked" in slow.summary
    assert slow.metrics["up_timeouts"] == 1
    assertion = text + ("Traceback (most recent call last):\n  File \"/v/celery/concurrency/asynpool.py\", "
                        "line 629, in verify_process_alive\n    assert proc.outqR_fd in hub.readers\nAssertionError\n")
    slow_bug = SCENARIO.judge(log_obs(assertion, mode="slow-start", kind="slow-start"))
    assert slow_bug.signature == "verify-process-alive-assertion"


def test_targeted_point_not_reached_is_na_and_start_failure_is_judged():
    out = SCENARIO.judge(obs(point_reached=False, injection=None, point_missed=7))
    assert out.verdict == Verdict.NA and "7 creations missed it" in out.summary
    hang = SCENARIO.judge(obs(ready=False, exit_code=None))
    assert hang.verdict == Verdict.HANG and hang.signature == "start-hang"


def test_non_prefork_pool_says_max_tasks_per_child_does_not_apply():
    out = SCENARIO.judge(obs(mode="random", kind="random", point=None, injection=None, pool="gevent",
                             children_apply=False, signals=[{"signal": "QUIT", "by": "driver", "at_s": 2.0}]))
    assert out.verdict == Verdict.PASS
    assert "--max-tasks-per-child does not apply to the gevent pool" in out.summary


def test_aggregate_keeps_the_first_reproduction_time():
    outs = [SCENARIO.judge(obs(cell_elapsed_s=8.0)),
            SCENARIO.judge(log_obs(SENTINEL_LOG, cell_elapsed_s=17.5)),
            SCENARIO.judge(log_obs(SENTINEL_LOG, cell_elapsed_s=26.0))]
    cell = aggregate(outs)
    assert cell.signature == "sentinel-poll-attributeerror" and cell.evidence["time_to_repro_s"] == 17.5
    rate = next(r for r in cell.metrics["rates"] if r["signature"] == "sentinel-poll-attributeerror")
    assert (rate["k"], rate["n"], rate["first_attempt"]) == (2, 3, 2)


def test_modes_parse_into_kinds_points_and_faults():
    assert Mode.parse("random") == Mode(Kind.RANDOM)
    assert Mode.parse("targeted") == Mode(Kind.TARGETED, Point.UP)
    assert Mode.parse("targeted+kill-child").faults == [Fault.KILL_NEW_CHILD, Fault.SIGNAL_MASTER]
    assert Mode.parse("targeted@registering").point == Point.REGISTERING
    assert Mode.parse("targeted@reaping").point == Point.REAPING
    assert Fault.SLOW_CHILD_INIT in Mode.parse("slow-start").faults
    for bad in ("random+kill-child", "targeted@registering+kill-child", "slow-start@up", "targeted@nowhere"):
        with pytest.raises(ValueError):
            Mode.parse(bad)


def test_catalog_modes_and_profiles_are_valid():
    from lab.catalog import PROFILES, SCENARIOS
    info = SCENARIOS["shutdown-race"]
    for mode in info.modes:
        Mode.parse(mode)
    plans = {p: signal_plan(PROFILES[p]["env"]) for p in info.default_profiles}
    assert plans["term"] == {"signals": ["TERM"], "remap_sigterm": False, "cold": False, "label": "TERM"}
    assert plans["quit"]["cold"] and plans["term-then-quit"]["signals"] == ["TERM", "QUIT"]
    assert plans["term-remap-quit"]["cold"] and plans["term-remap-quit"]["remap_sigterm"]
    assert signal_plan({})["signals"] == ["QUIT"]  # a profile without a plan: the cold path


def test_worker_env_configures_only_what_the_mode_needs():
    plan = signal_plan({"LAB_RACE_SIGNALS": "TERM,QUIT"})
    env = worker_env(Mode.parse("targeted+kill-child"), plan, skip=2)
    assert env["LAB_RACE_POINT"] == "up" and env["LAB_RACE_SIGNAL"] == "TERM"
    assert env["LAB_RACE_KILL_CHILD"] == "1" and env["LAB_RACE_SKIP"] == "2"
    slow = worker_env(Mode.parse("slow-start"), plan, skip=1)
    assert "LAB_RACE_POINT" not in slow and float(slow["LAB_PROC_ALIVE_TIMEOUT"]) == 1.0
    lo, hi = map(float, slow["LAB_RACE_CHILD_INIT_SLEEP"].split(","))
    assert lo < 1.0 < hi
    assert worker_env(Mode.parse("random"), plan, skip=1) == {"LAB_APP_MODULES": "lab.app.race_hooks"}


def test_applies_is_na_for_pools_without_children(tmp_path):
    def ctx(pool, mode):
        cell = Cell("5.6.2", pool, "redis", "redis", "shutdown-race", "quit", mode)
        return CellContext(cell=cell, attempt=1, workdir=tmp_path, queue="q", worker_env={}, profile={}, seed=1)
    assert SCENARIO.applies(ctx("threads", "random")) is None
    assert SCENARIO.not_for(ctx("threads", "random").cell) is None
    for mode in ("targeted", "slow-start"):
        reason = SCENARIO.not_for(ctx("solo", mode).cell)  # decided before provisioning
        assert reason and "the solo pool has none" in reason


def test_journal_tail_reads_incrementally_and_waits_for_torn_lines(tmp_path):
    path = tmp_path / "j.jsonl"
    tail = JournalTail(path)
    assert tail.poll() == []
    path.write_text(json.dumps({"event": "a"}) + "\n" + '{"event": "b"')
    assert [e["event"] for e in tail.poll()] == ["a"]
    with open(path, "a") as fh:
        fh.write('}\n{"event": "a"}\n')
    assert [e["event"] for e in tail.poll()] == ["b", "a"]
    assert tail.count("a") == 2 and tail.first("b") == {"event": "b"}


class FakePool:
    """The shape of AsynPool that the hook's named points rely on."""

    def __init__(self):
        self._pool = []

    def _create_worker_process(self, i):
        from celery import signals as celery_signals
        celery_signals.worker_before_create_process.send(sender=self)
        proc = types.SimpleNamespace(pid=4242 + i, _popen=object())
        self._pool.append(proc)
        self.on_process_up(proc)

    def on_process_up(self, proc):
        proc._sentinel_poll = 99

    def _join_exited_workers(self):
        for i in reversed(range(len(self._pool))):
            worker = self._pool[i]
            self.process_flush_queues(worker)
            del self._pool[i]

    def process_flush_queues(self, proc):
        pass


@pytest.mark.parametrize("point", ["up", "reaping"])
def test_race_hooks_journal_before_acting_and_reraise(tmp_path, monkeypatch, point):
    """The worker-side hook, in-process, on a fake pool: the handler raises at the point."""
    pytest.importorskip("celery")
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("LAB_JOURNAL", str(journal))
    for key, value in {"LAB_RACE_POINT": point, "LAB_RACE_SIGNAL": "QUIT", "LAB_RACE_SKIP": "1",
                       "LAB_RACE_KILL_CHILD": ""}.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("lab.app.race_hooks", None)
    import lab.app.race_hooks as hooks
    from celery import signals as celery_signals
    try:
        kills = []

        def fake_kill(pid, sig):
            kills.append((pid, sig))
            if sig == signal.SIGQUIT:
                raise AttributeError("'ForkProcess' object has no attribute '_sentinel_poll'")
        monkeypatch.setattr(hooks.os, "kill", fake_kill)
        pool = FakePool()
        hooks._ready()
        pool._create_worker_process(0)  # creation 1: skipped
        if point == "up":
            with pytest.raises(AttributeError):
                pool._create_worker_process(1)  # creation 2: fires at on_process_up
        else:
            pool._create_worker_process(1)  # creation 2 arms; the next reap is the point
            assert kills == []
            with pytest.raises(AttributeError):
                pool._join_exited_workers()
        assert kills == [(os.getpid(), signal.SIGQUIT)]
        events = {e["event"]: e for e in map(json.loads, journal.read_text().splitlines())}
        inject = events["race_inject"]
        state = (inject["point"], inject["child_pid"], inject["in_pool"], inject["forked"], inject["creation"])
        assert state == (point, 4243, True, True, 2)
        assert inject["sentinel_tracked"] is (point == "reaping")
        if point == "reaping":
            assert (inject["index"], inject["pool_size"]) == (1, 2)
        assert "_sentinel_poll" in events["race_inject_raised"]["exception"]
        assert "race_inject_returned" not in events and sys.getprofile() is None
    finally:
        sys.setprofile(None)
        for name in ("worker_before_create_process", "worker_ready", "worker_process_init"):
            for receiver in (hooks._before_create, hooks._ready, hooks._slow_child):
                getattr(celery_signals, name).disconnect(receiver)
        sys.modules.pop("lab.app.race_hooks", None)
