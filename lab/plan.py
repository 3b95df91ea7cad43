"""A run's plan: the expanded cells, the estimate, and records for failures
that happen before any cell can start (a Celery version that will not install).

Contract: `make_plan(matrix, run_id)` is a JSON-able dict written once to
<run-dir>/plan.json; every later step (per-version sessions, the report)
reads the cells from it, so all agree on what the run contains.
`record_install_failure` turns an install failure into one `error` record
per cell of that version, so a bad version never crashes the run and never
silently disappears from the report. Standard library only: the noxfile
calls it from a venv where installing Celery failed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lab import __version__, catalog
from lab.matrix import Cell, Matrix
from lab.results import PLAN_FILE, ResultRecord, append_record, done_cell_ids, write_json
from lab.verdict import Outcome, Verdict

VENV_ESTIMATE_S = 25.0  # creating one Celery venv with uv, measured by bench/


def cell_estimate(cell: Cell) -> float:
    return catalog.SCENARIOS[cell.scenario].estimate(cell.mode) * cell.repeats


def estimate_seconds(cells: list[Cell], lanes: int, versions: int) -> float:
    work = sum(cell_estimate(c) for c in cells)
    return work / max(1, lanes) + versions * VENV_ESTIMATE_S


def make_plan(matrix: Matrix, run_id: str, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """The plan of a run; with `shard=(i, n)`, only shard i of n (lab.shard.balance), marked
    with the whole plan's id so `lab report` merges the shards as one run."""
    from lab.shard import plan_id, shard_of

    cells = matrix.cells()
    whole = plan_id(cells)
    info = None
    if shard:
        info = {"index": shard[0], "of": shard[1], "plan_id": whole, "cells_total": len(cells)}
        cells = shard_of(cells, shard[0], shard[1], cell_estimate)
    versions = sorted({c.celery for c in cells}, key=matrix.celery.index)
    return {
        "run_id": run_id, "matrix": matrix.name, "matrix_path": matrix.path,
        "description": matrix.description, "lanes": matrix.lanes,
        "celery": versions if shard else matrix.celery, "pins": matrix.pins, "profiles": matrix.profiles,
        "cells": [c.to_dict() for c in cells], "plan_id": whole, "shard": info,
        "estimate_s": round(estimate_seconds(cells, matrix.lanes, len(versions))),
        "started_at": time.time(), "lab_version": __version__,
        "host": {"cores": os.cpu_count(), "load1": round(os.getloadavg()[0], 2)},
    }


def write_plan(run_dir: Path, plan: dict[str, Any]) -> Path:
    path = run_dir / PLAN_FILE
    write_json(path, plan)
    return path


def load_plan(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / PLAN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no plan; start runs with `lab plan` or `nox -s matrix`")
    return json.loads(path.read_text())


def plan_cells(plan: dict[str, Any], celery: str | None = None) -> list[Cell]:
    cells = [Cell.from_dict(c) for c in plan["cells"]]
    return [c for c in cells if celery is None or c.celery == celery]


def rerun_command(plan: dict[str, Any], cell: Cell) -> str:
    return (f"nox -s \"cells-{cell.celery}\" -- --matrix {plan['matrix_path']} "
            f"--only {cell.cell_id}")


def record_install_failure(run_dir: Path, celery: str, detail: str) -> int:
    """One `setup-failed` record per not-yet-recorded cell of this Celery version: the
    scenario never ran, so nothing about Celery is concluded."""
    plan = load_plan(run_dir)
    done = done_cell_ids(run_dir)
    count = 0
    for cell in plan_cells(plan, celery):
        if cell.cell_id in done:
            continue
        outcome = Outcome(Verdict.SETUP_FAILED, f"celery=={celery} could not be installed",
                          "setup:install", {"key_figure": "install failed"},
                          {"install_log": detail[-4000:]})
        append_record(run_dir, ResultRecord(
            run_id=plan["run_id"], cell_id=cell.cell_id, cell=cell.to_dict(), outcome=outcome,
            versions={"celery": celery}, started_at=time.time(), rerun=rerun_command(plan, cell),
            lab_version=__version__))
        count += 1
    return count


if __name__ == "__main__":  # python -m lab.plan install-failure <run_dir> <celery> <log>
    import sys
    _, action, run_dir, celery, log = sys.argv
    assert action == "install-failure", action
    text = Path(log).read_text(errors="replace") if Path(log).exists() else log
    print(f"recorded {record_install_failure(Path(run_dir), celery, text)} error record(s)")
