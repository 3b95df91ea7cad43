"""lab rejudge: a fixed checker over recorded observations, records rewritten, others kept."""

from __future__ import annotations

import json

from lab.matrix import Cell
from lab.rejudge import rejudge
from lab.results import ResultRecord, append_record, create_run_dir, read_records
from lab.verdict import Outcome, Verdict

from .test_shutdown_semantics import run


def test_rejudge_applies_the_current_checker_and_keeps_what_it_cannot(tmp_path):
    run_dir = create_run_dir(tmp_path, "r")
    cell = Cell("5.6.2", "prefork", "redis", "redis", "shutdown", "defaults", "soft-quit")
    other = Cell("5.6.2", "prefork", "redis", "redis", "shutdown", "defaults", "term")
    attempt = run_dir / "cells" / cell.cell_id / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "observations.json").write_text(json.dumps(run("soft-quit", exit_s=10.2)))
    old = Outcome(Verdict.STALL, "soft shutdown took 10.2s", "soft-slow-exit")
    append_record(run_dir, ResultRecord("r", cell.cell_id, cell.to_dict(), old))
    append_record(run_dir, ResultRecord("r", other.cell_id, other.to_dict(), Outcome(Verdict.NA, "n/a")))
    assert rejudge(run_dir, log=lambda _: None) == (1, 1, 1)
    records = {r.cell_id: r for r in read_records([run_dir])}
    assert records[cell.cell_id].outcome.verdict == Verdict.PASS
    assert records[cell.cell_id].environment["rejudged"]["was"] == {"verdict": "stall", "signature": "soft-slow-exit"}
    assert records[other.cell_id].outcome.verdict == Verdict.NA and "rejudged" not in records[other.cell_id].environment
