"""Worker stdio wiring (lab.worker_output): no line lost, lines never torn between the two
streams, a pty as controlling terminal, the cap counted, EOF at close. Real processes, no Celery."""

from __future__ import annotations

import subprocess

import pytest

from lab import worker_output
from lab.worker_output import Wiring, controlling_tty_preexec, normalize

SCRIPT = ("import sys\n"
          "for i in range(5000):\n"
          "    (sys.stdout if i % 2 else sys.stderr).write(f'line {i} ' + 'x' * (i % 300) + '\\n')\n")


def run(mode, tmp_path, argv, **popen):
    wiring = Wiring.open(mode, tmp_path / "w.log")
    proc = subprocess.Popen(argv, **wiring.popen_kwargs, **popen)
    wiring.started()
    assert proc.wait(30) == 0
    facts = wiring.close(10)
    return (tmp_path / "w.log").read_bytes(), facts


@pytest.mark.parametrize("mode", ["pipe", "file"])
def test_every_line_whole_and_once(tmp_path, mode):
    data, facts = run(mode, tmp_path, ["python3", "-u", "-c", SCRIPT])
    lines = data.decode().splitlines()
    assert sorted(lines, key=lambda l: int(l.split()[1])) == [f"line {i} " + "x" * (i % 300) for i in range(5000)]
    assert facts["stdio"] == mode
    if mode == "pipe":
        assert facts["stdio_drained_to_eof"] and facts["stdio_bytes"]["stdout"] and facts["stdio_bytes"]["stderr"]


def test_tty_is_the_controlling_terminal_and_normalised(tmp_path):
    probe = ("import os, sys\n"
             "print('isatty', os.isatty(0), os.isatty(1), os.isatty(2))\n"
             "print('ctty', os.ttyname(1) == os.ttyname(0), os.getsid(0) == os.getpid())\n"
             "sys.stdout.write('\\x1b[1;32mgreen\\x1b[0m\\n')\n")
    wiring = Wiring.open("tty", tmp_path / "w.log")
    proc = subprocess.Popen(["python3", "-c", probe], preexec_fn=controlling_tty_preexec(), **wiring.popen_kwargs)
    wiring.started()
    assert proc.wait(30) == 0
    facts = wiring.close(10)
    text = normalize((tmp_path / "w.log").read_bytes()).decode()
    assert "isatty True True True" in text and "ctty True True" in text and "\ngreen\n" in text + "\n"
    assert facts["stdio_drained_to_eof"] and "\r" not in text


def test_output_over_the_cap_is_counted_not_silently_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_output, "LOG_CAP_BYTES", 1000)
    data, facts = run("pipe", tmp_path, ["python3", "-c", "print('y' * 99, flush=True)\n" * 20])
    assert len(data) == 1000 and facts["stdio_dropped_bytes"] == 2000 - 1000


def test_close_returns_while_a_grandchild_still_holds_the_pipe(tmp_path):
    wiring = Wiring.open("pipe", tmp_path / "w.log")
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & echo started"], **wiring.popen_kwargs, start_new_session=True)
    wiring.started()
    proc.wait(10)
    facts = wiring.close(0.5)  # the backgrounded sleep keeps the write side: close does not wait for it
    assert not facts["stdio_drained_to_eof"] and b"started" in (tmp_path / "w.log").read_bytes()
    import os
    import signal
    import time

    import psutil
    def in_group(pid: int) -> bool:
        try:
            return os.getpgid(pid) == proc.pid
        except ProcessLookupError:
            return False

    sleepers = [c for c in psutil.process_iter(["cmdline"]) if c.info["cmdline"] == ["sleep", "30"]
                and in_group(c.pid)]
    os.killpg(proc.pid, signal.SIGKILL)
    psutil.wait_procs(sleepers, timeout=5)  # gone (or a zombie) before the leftover check looks


def test_unknown_mode():
    with pytest.raises(ValueError, match="allowed: pipe, tty, file"):
        Wiring.open("socket", "/tmp/x.log")
