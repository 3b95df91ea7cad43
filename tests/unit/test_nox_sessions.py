"""The noxfile's matrix session (issue 16, input 5): `--resume RUN_DIR` runs the
run's unfinished cells (the `cells` session, every dependency set) and
rebuilds its report, without planning a new run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class Refused(Exception):
    pass


class FakeSession:
    def __init__(self, posargs):
        self.posargs, self.runs, self.notified = posargs, [], []

    def install(self, *args, **kwargs):
        pass

    def run(self, *args, **kwargs):
        self.runs.append(args)

    def notify(self, name, posargs=None):
        self.notified.append((name, posargs))

    def error(self, message):
        raise Refused(message)


@pytest.fixture(scope="module")
def noxfile():
    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("lab_noxfile", REPO / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resume_runs_every_version_of_the_run_then_its_report(noxfile, tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"celery": ["5.6.2", "5.7.0"], "cells": []}))
    session = FakeSession(["--resume", str(tmp_path)])
    noxfile.matrix(session)
    assert not any(args[:2] == ("lab", "plan") for args in session.runs)  # no new run
    assert session.notified == [("cells", ["--run-dir", str(tmp_path)]), ("report", [str(tmp_path)])]


def test_resume_of_a_dir_without_a_plan_is_refused(noxfile, tmp_path):
    with pytest.raises(Refused, match="no plan.json there"):
        noxfile.matrix(FakeSession(["--resume", str(tmp_path)]))
