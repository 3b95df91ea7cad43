"""A drain worker (an observer) runs without mingle and says so; the worker under test keeps
Celery's defaults (lab.worker_fidelity, issue 15)."""

from __future__ import annotations

from lab.worker import WorkerSpec
from lab.worker_fidelity import OBSERVER_FLAGS, QUIET_FLAGS


def test_the_worker_under_test_keeps_mingle():
    spec = WorkerSpec(pool="prefork")
    argv = spec.argv("w@lab")
    assert "--without-mingle" not in argv
    assert not any(d["what"] == " ".join(OBSERVER_FLAGS) for d in spec.deviations())


def test_a_drain_worker_drops_mingle_and_records_why():
    spec = WorkerSpec(pool="threads", observer=True, extra_args=["--x"])
    argv = spec.argv("drain@lab")
    assert argv.count("--without-mingle") == 1 and argv[-1] == "--x"
    why = [d["why"] for d in spec.deviations() if d["what"] == "--without-mingle"]
    assert why and "observer" in why[0] and "neighbour" in why[0]


def test_a_quiet_profile_is_not_given_the_flag_twice():
    spec = WorkerSpec(pool="prefork", observer=True, profile_args=list(QUIET_FLAGS))
    assert spec.argv("drain@lab").count("--without-mingle") == 1
