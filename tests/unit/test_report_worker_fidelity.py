"""The cell page shows each worker's stdio mode and its deviations from a plain `celery worker`
(issue 11), from environment.workers in the record."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lab.report import build_report
from lab.results import append_record, create_run_dir
from lab.verdict import Outcome, Verdict

_spec = importlib.util.spec_from_file_location(
    "lab_report_sample_records_fid", Path(__file__).resolve().parents[1] / "fixtures" / "sample_records.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)


def test_cell_page_lists_stdio_and_deviations(tmp_path):
    run = create_run_dir(tmp_path, "20240103-120000-fid001")
    c = samples.cell("5.6.0", "gevent", "redis")
    rec = samples.record("20240103-120000-fid001", 0, c, Outcome(Verdict.PASS, "ok"))
    rec.environment = {"workers": [{"stdio": "tty", "deviations": [
        {"what": "--without-gossip", "why": "the profile's worker_args"},
        {"what": "env --default-signal", "why": "default signal dispositions"}]}]}
    append_record(run, rec)
    build_report([run], tmp_path / "html")
    page = next((tmp_path / "html" / "cells").glob("*.html")).read_text()
    assert "deviations from a plain" in page and "<b>tty</b>" in page
    assert "--without-gossip" in page and "the profile&#39;s worker_args" in page
