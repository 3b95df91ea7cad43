"""Parent-death signals (issue 16, input 1): a child forked for a short-lived
thread outlives that thread, dies with its owner process, and keeps the
signal after a preexec that changes its user (postgres runs demoted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from lab import lifetime
from lab.reaper import kill_tree

pytestmark = pytest.mark.skipif(not lifetime.supported(), reason="PR_SET_PDEATHSIG is Linux-only")

PRINT_PDEATHSIG = [sys.executable, "-c", "from lab.lifetime import get_pdeathsig; print(get_pdeathsig())"]


def test_child_gets_the_signal_and_keeps_it_across_exec():
    proc = lifetime.popen(PRINT_PDEATHSIG, signal.SIGKILL, stdout=subprocess.PIPE)
    assert proc.communicate(timeout=30)[0].strip() == str(int(signal.SIGKILL)).encode()


def test_a_child_forked_for_a_lane_thread_outlives_the_thread():
    box = {}
    lane = threading.Thread(target=lambda: box.update(proc=lifetime.popen(["sleep", "30"])))
    lane.start()
    lane.join()
    time.sleep(0.5)  # the kernel would have signalled by now if the lane thread had forked it
    proc = box["proc"]
    try:
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(5)


OWNER = textwrap.dedent("""
    import os, sys, threading, time
    from lab import lifetime
    demote = (lambda: os.setuid(65534)) if sys.argv[1] == "demoted" else None
    box = {}
    t = threading.Thread(target=lambda: box.update(p=lifetime.popen(["sleep", "60"], preexec=demote, cwd="/")))
    t.start(); t.join()
    print(box["p"].pid, flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("user", ["same", pytest.param("demoted", marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to change user"))])
def test_children_die_with_their_owner_even_on_sigkill(user):
    """`demoted`: the preexec drops root first (as postgres's does); setuid clears the
    parent-death signal, so it must be set after: the child still dies."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, user], stdout=subprocess.PIPE)
    child = int(owner.stdout.readline())
    assert psutil.Process(child).uids().real == (65534 if user == "demoted" else os.getuid())
    owner.kill()
    owner.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"child {child} outlived its SIGKILLed owner")


RUNNER = textwrap.dedent("""
    import signal, sys, time
    from lab.lifetime import die_with_parent
    signal.signal(signal.SIGTERM, lambda *a: (open(sys.argv[1], "w").write("SIGTERM"), sys.exit(0)))
    die_with_parent(signal.SIGTERM)
    print("armed", flush=True)
    time.sleep(60)
""")
NOX = textwrap.dedent("""
    import subprocess, sys, time
    runner = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    print(runner.pid, flush=True)
    time.sleep(60)
""")


def test_the_runner_gets_sigterm_when_nox_is_sigkilled(tmp_path):
    """`lab run-cells` arms die_with_parent(SIGTERM): its cleanup runs when nox dies."""
    marker = tmp_path / "got"
    nox = subprocess.Popen([sys.executable, "-c", NOX, RUNNER, str(marker)], stdout=subprocess.PIPE)
    runner = int(nox.stdout.readline())
    assert nox.stdout.readline().strip() == b"armed"
    nox.kill()
    nox.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (marker.exists() and marker.read_text()):
        time.sleep(0.05)  # the handler creates the file, then writes
    try:
        # the runner may still be exiting after its handler wrote: SIGKILL it and wait
        # (bounded) until it is gone, so the owner check at teardown does not see it
        assert not kill_tree([psutil.Process(runner)], timeout=10)
    except psutil.NoSuchProcess:
        pass
    assert marker.exists() and marker.read_text() == "SIGTERM"
