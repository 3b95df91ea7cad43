"""`lab cleanup` is scoped and `--check` is a dry run (issue 16, input 3); lab temp
dirs name their owner and are removed once it is gone (input 1)."""

from __future__ import annotations

import json
import os
import subprocess

import psutil
import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.reaper import OWNER_ENV, OWNER_FILE, SCOPE_ENV, owned_temp_dir, stale_temp_dirs


def sleeper(token: str, scope: str) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], env={**os.environ, OWNER_ENV: token, SCOPE_ENV: scope})


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_check_lists_and_kills_nothing_then_cleanup_stops_only_its_scope(tmp_path, owner_token):
    mine, other = tmp_path / "reports", tmp_path / "other-checkout" / "reports"
    ours = sleeper(f"{owner_token}/run-a", str(mine.resolve()))
    theirs = sleeper(f"{owner_token}/run-b", str(other.resolve()))
    try:
        result = CliRunner().invoke(main, ["cleanup", "--check", "--reports", str(mine)])
        assert result.exit_code == 1, result.output
        assert f"left running: pid {ours.pid} sleep 60" in result.output
        assert str(theirs.pid) not in result.output and "nothing was killed" in result.output
        assert ours.poll() is None and theirs.poll() is None  # a dry run

        result = CliRunner().invoke(main, ["cleanup", "--reports", str(mine)])
        assert result.exit_code == 0, result.output
        assert ours.wait(10) == -9 and theirs.poll() is None  # the other checkout's run is untouched

        result = CliRunner().invoke(main, ["cleanup", "--check", "--reports", str(mine)])
        assert result.exit_code == 0 and "nothing left running" in result.output
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait(5)


def test_owner_selects_one_token_and_excludes_all():
    result = CliRunner().invoke(main, ["cleanup", "--owner", "x", "--all"])
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_temp_dirs_name_their_owner_and_are_stale_once_it_is_gone(tmp_path, monkeypatch):
    # a scope of this test's own: the cleanup below kills what its scope holds, and every other
    # test's workers carry the checkout's scope (pytest-xdist runs them beside this one)
    monkeypatch.setenv("LAB_SCOPE", str((tmp_path / "reports").resolve()))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    live = owned_temp_dir("lab-services-")
    assert oct(live.stat().st_mode & 0o777) == "0o711"
    info = json.loads((live / OWNER_FILE).read_text())
    assert info["pid"] == os.getpid() and info["start"] == psutil.Process().create_time()
    dead = owned_temp_dir("lab-pg-")
    (dead / OWNER_FILE).write_text(json.dumps({**info, "pid": dead_pid()}))
    reused = owned_temp_dir("lab-services-")  # a live pid, but not the process that made it
    (reused / OWNER_FILE).write_text(json.dumps({**info, "start": info["start"] - 1000}))
    (tmp_path / "lab-services-old").mkdir()  # no owner.json: an older lab's, or not ours
    assert set(stale_temp_dirs(root=tmp_path)) == {dead, reused}
    assert stale_temp_dirs(root=tmp_path, scope="/elsewhere") == []
    result = CliRunner().invoke(main, ["cleanup", "--check", "--reports", info["scope"]])
    assert result.exit_code == 1 and f"left behind: {dead}" in result.output and dead.exists()
    result = CliRunner().invoke(main, ["cleanup", "--reports", info["scope"]])
    assert result.exit_code == 0 and not dead.exists() and not reused.exists()
    assert live.exists() and (tmp_path / "lab-services-old").exists()


def test_all_widens_to_every_lab_process_and_check_still_kills_nothing(monkeypatch, tmp_path):
    """--all selects through find_all_owned (never run for real here: it would reach other labs)."""
    import lab.reaper as reaper
    fake = sleeper("someone-else", "/elsewhere")
    try:
        monkeypatch.setattr(reaper, "find_all_owned", lambda: [psutil.Process(fake.pid)])
        monkeypatch.setattr(reaper, "stale_temp_dirs", lambda **kw: [])
        monkeypatch.setattr(reaper, "kill_tree", lambda procs: pytest.fail("--check killed"))
        result = CliRunner().invoke(main, ["cleanup", "--all", "--check"])
        assert result.exit_code == 1 and f"left running: pid {fake.pid}" in result.output
        assert "left in the machine (nothing was killed)" in result.output and fake.poll() is None
    finally:
        fake.kill()
        fake.wait(5)
