"""The watchdog (issue 16, input 1): when its runner dies by SIGKILL it kills what
the parent-death signal cannot reach (here: a plain child, like a forked pool
child) and the runner's temp dir, and prints the resume command; a normal end
disarms it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil

from lab.reaper import OWNER_ENV, find_owned

RUNNER = textwrap.dedent("""
    import subprocess, sys, time
    from lab.reaper import owned_temp_dir
    from lab.watchdog import Watchdog
    tmp = owned_temp_dir()
    dog = Watchdog.start(sys.argv[1], "nox -s matrix -- --resume RUN")
    child = subprocess.Popen(["sleep", "60"])  # no parent-death signal: only the watchdog stops it
    print(child.pid, tmp, dog.proc.pid, flush=True)
    if sys.argv[2] == "normal":
        dog.disarm(); child.kill(); child.wait()
        print("done", flush=True)
    else:
        time.sleep(60)
""")


def start(tmp_path, token, how):
    env = {**os.environ, OWNER_ENV: token, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, token, how], stdout=subprocess.PIPE, env=env)
    child, tmp, dog = proc.stdout.readline().split()
    return proc, int(child), tmp.decode(), int(dog)


def test_a_sigkilled_runner_is_swept_by_its_watchdog(tmp_path, owner_token):
    token = f"{owner_token}/runner-x"
    proc, child, tmp, dog = start(tmp_path, token, "sigkill")
    assert psutil.pid_exists(child) and os.path.isdir(tmp)
    proc.kill()
    proc.wait(10)
    out = proc.stdout.read().decode()  # EOF once the watchdog, the last writer, has exited
    assert "lab watchdog: the runner died; killed 1 leftover process(es), removed 1 temp dir(s)" in out
    assert "resume: nox -s matrix -- --resume RUN" in out
    assert find_owned(token) == [] and not os.path.exists(tmp)


def test_a_normal_end_disarms_the_watchdog(tmp_path, owner_token):
    proc, child, tmp, dog = start(tmp_path, f"{owner_token}/runner-y", "normal")
    out = proc.communicate(timeout=30)[0].decode()
    assert out.strip() == "done" and proc.returncode == 0
    deadline = time.monotonic() + 5
    while psutil.pid_exists(dog) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(dog) or psutil.Process(dog).status() == psutil.STATUS_ZOMBIE


def test_a_dir_recreated_after_its_removal_is_removed_again(tmp_path, monkeypatch):
    """A writer that escaped the sweep recreates the dir without its owner.json: the
    watchdog still knows it was the dead runner's, and removes it until it stays gone."""
    import json
    import threading
    import types

    from lab import watchdog
    from lab.reaper import OWNER_FILE
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    path = tmp_path / "lab-services-x"
    path.mkdir()
    (path / OWNER_FILE).write_text(json.dumps({"pid": 2 ** 22 + 7, "start": 1.0, "token": "t/r"}))
    monkeypatch.setattr(watchdog, "find_owned", lambda token: [])
    recreated = threading.Event()

    def late_writer():
        bound = time.monotonic() + 10.0
        while path.exists():
            if time.monotonic() > bound:
                return
            time.sleep(0.005)
        (path / "sub").mkdir(parents=True)  # as a process that was still running would
        recreated.set()

    # the watchdog's pause after a removal lasts until the writer has been: no timing in the test
    monkeypatch.setattr(watchdog, "time", types.SimpleNamespace(
        sleep=lambda s: recreated.wait(5), monotonic=time.monotonic))
    writer = threading.Thread(target=late_writer, daemon=True)
    writer.start()
    removed, left = watchdog.remove_dirs("t/r", time.monotonic() + 5.0)
    writer.join(5)
    assert recreated.is_set() and removed == [path] and left == [] and not path.exists()
