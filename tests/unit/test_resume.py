"""Resume starts clean (issue 16, input 2) and says exactly how (input 5): the
dead runner's leftovers are stopped first, the generation moves on so a rerun
cell gets new names (queues, SQLite files, databases, vhosts), a live runner
is never doubled, and the printed command is the one that resumes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab.matrix import Cell
from lab.reaper import OWNER_ENV
from lab.resume import RunnerBusy, claim, resume_command
from lab.runner import namespace_for
from lab.services.sqlite import SQLiteFiles

CELL = Cell("5.6.2", "eventlet", "sql", "sqlite", "lifecycle-smoke", "defaults", "default")


def test_claim_stops_the_dead_runners_leftovers_and_moves_the_generation(tmp_path, owner_token):
    first = claim(tmp_path, "5.6.2")
    assert first.generation == 1 and first.swept == []
    first.release()
    state = tmp_path / "runners" / "5.6.2.json"
    dead_token = f"{owner_token}/dead-runner"
    state.write_text(json.dumps({**json.loads(state.read_text()), "token": dead_token, "pid": 1}))
    leftover = subprocess.Popen(["sleep", "60"], env={**os.environ, OWNER_ENV: dead_token})
    bystander = subprocess.Popen(["sleep", "60"], env={**os.environ, OWNER_ENV: f"{owner_token}-other"})
    try:
        second = claim(tmp_path, "5.6.2")
        assert second.generation == 2 and len(second.swept) == 1 and "sleep 60" in second.swept[0]
        assert leftover.wait(10) == -9 and bystander.poll() is None
        with pytest.raises(RunnerBusy, match="celery 5.6.2 is being run by pid"):
            claim(tmp_path, "5.6.2")  # while `second` holds it
        other_version = claim(tmp_path, "5.7.0")  # another version's runner is independent
        other_version.release()
        second.release()
        assert claim(tmp_path, "5.6.2").generation == 3
    finally:
        for proc in (leftover, bystander):
            proc.kill()
            proc.wait(5)


def test_a_resumed_cell_gets_new_queue_names_and_sqlite_files(tmp_path):
    first, resumed = namespace_for(CELL, "run-1", 1), namespace_for(CELL, "run-1", 2)
    assert first == namespace_for(CELL, "run-1")  # an uninterrupted run keeps its names
    assert resumed != first and resumed != namespace_for(CELL, "run-1", 3)
    sqlite = SQLiteFiles(tmp_path)
    assert sqlite.url_for(first) != sqlite.url_for(resumed)
    assert sqlite.url_for(first, "backend") != sqlite.url_for(resumed, "backend")


def test_resume_command_is_the_nox_matrix_resume_of_the_run_dir(tmp_path, monkeypatch):
    from lab import resume
    monkeypatch.chdir(resume.REPO)
    assert resume_command(tmp_path) == f"nox -s matrix -- --resume {tmp_path.resolve()}"
    monkeypatch.chdir(tmp_path)
    assert resume_command(tmp_path) == f"cd {resume.REPO} && nox -s matrix -- --resume {tmp_path.resolve()}"
