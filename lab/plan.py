"""A run's plan: the expanded cells, the estimate, and records for failures
that happen before any cell can start (a Celery version that will not install).

Contract: `make_plan(matrix, run_id)` is a JSON-able dict written once to
<run-dir>/plan.json; every later step (per-version sessions, the report)
reads the cells from it, so all agree on what the run contains.
`check_budget` refuses a plan estimated over the matrix's budget_minutes.
`plan["sets"]` maps each dependency-set key (lab.deps.DepSet: Python +
Celery + pins) to its exact requirements; every planned cell names its set.
`record_setup_failure` turns a set that cannot be built into one record per
cell of that set — `setup-failed` naming the conflict, or `n/a` when the
interpreter is missing — so a bad set never crashes the run and never
silently disappears from the report. Standard library only.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

from lab import __version__, catalog
from lab.matrix import Cell, Matrix, MatrixError
from lab.results import PLAN_FILE, ResultRecord, append_record, done_cell_ids, write_json
from lab.verdict import Outcome, Verdict
from lab.sides import setup_failed_outcome

VENV_ESTIMATE_S = 25.0  # creating one Celery venv with uv, measured by bench/


NA_ESTIMATE_S = 0.1  # a cell its scenario's not_for() rules out: recorded n/a before provisioning


def cell_estimate(cell: Cell) -> float:
    """Seconds one cell is expected to take (all its repeats): the catalog's per-mode estimate,
    or NA_ESTIMATE_S where the scenario rules the cell out from the cell alone."""
    if static_na(cell):
        return NA_ESTIMATE_S
    return catalog.SCENARIOS[cell.scenario].estimate(cell.mode, cell.broker) * cell.repeats


def static_na(cell: Cell) -> str | None:
    """Why the cell is n/a from the cell alone (its scenario's `not_for`: pool, broker, mode), or
    None; the runner records it without provisioning. A mode the scenario rejects gives None: the
    cell process records that as the lab error it is."""
    return _static_na(cell.scenario, cell.pool, cell.broker, cell.mode)


@functools.lru_cache(maxsize=None)
def _static_na(scenario: str, pool: str, broker: str, mode: str) -> str | None:
    from lab import scenarios
    try:
        probe = Cell(celery="0", pool=pool, broker=broker, backend="redis", scenario=scenario,
                     profile="defaults", mode=mode)
        return scenarios.get(scenario).not_for(probe) or None
    except Exception:
        return None


# `lanes = "auto"` on 2 cores: the catalog's one-lane estimates of the default matrix against its measured
# wall of cells: 4545 s in 509 s (8.9; run 20261202-052530, 305 cells, up to 8 lanes), 7444 s in 757 s and
# 724 s (9.8, 10.3; runs -123112 and -124627, 550 cells, up to 12 lanes); 9.5 keeps the planner's figure on
# the safe side (it was 4.5 with 6 lanes before bytecode)
AUTO_LANES_SPEEDUP = 9.5


def estimate_seconds(cells: list[Cell], lanes: int | str, versions: int) -> float:
    work = sum(cell_estimate(c) for c in cells)
    effective = AUTO_LANES_SPEEDUP if lanes == "auto" else max(1, int(lanes))
    return work / effective + versions * VENV_ESTIMATE_S


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
    sets: dict[str, dict[str, Any]] = {}
    cell_dicts = []
    for cell in cells:
        depset = cell.depset(matrix.extra_requirements(cell.celery))
        sets.setdefault(depset.key, {**depset.to_dict(), "cells": 0})["cells"] += 1
        cell_dicts.append({**cell.to_dict(), "set": depset.key})
    return {
        "run_id": run_id, "matrix": matrix.name, "matrix_path": matrix.path,
        "description": matrix.description, "lanes": matrix.lanes,
        "celery": versions if shard else matrix.celery, "pins": matrix.pins, "profiles": matrix.profiles,
        "sets": sets, "cells": cell_dicts, "plan_id": whole, "shard": info,
        "estimate_s": round(estimate_seconds(cells, matrix.lanes, len(sets))),
        "started_at": time.time(), "lab_version": __version__,
        "host": {"cores": os.cpu_count(), "load1": round(os.getloadavg()[0], 2)},
    }


def check_budget(matrix: Matrix, estimate_s: float, over_budget: bool = False) -> str | None:
    """Refuse (MatrixError on matrix.budget_minutes) a plan whose estimate exceeds
    the matrix's budget unless `over_budget`; returns a note when over and allowed."""
    budget = matrix.budget_minutes
    if budget is None or estimate_s <= budget * 60:
        return None
    text = f"the plan's estimate, {estimate_s / 60:.1f} min, exceeds the budget of {budget} min"
    if over_budget:
        return f"{text} (--over-budget: running anyway)"
    raise MatrixError(matrix.path, "matrix.budget_minutes",
                      f"{text}; shrink the matrix or pass --over-budget "
                      "(`nox -s matrix -- --matrix NAME --over-budget`)")


def write_plan(run_dir: Path, plan: dict[str, Any]) -> Path:
    path = run_dir / PLAN_FILE
    write_json(path, plan)
    return path


def load_plan(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / PLAN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no plan; start runs with `lab plan` or `nox -s matrix`")
    return json.loads(path.read_text())


def _vkey(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def cell_set_key(plan: dict[str, Any], cell_dict: dict[str, Any]) -> str:
    """The dependency-set key of a planned cell (plans from before sets: its Celery version)."""
    return str(cell_dict.get("set") or cell_dict.get("celery"))


_SET_INDEX: dict[int, tuple[dict, dict[str, str]]] = {}


def set_of(plan: dict[str, Any], cell: Cell) -> str:
    """The dependency-set key the plan gave this cell (an index built once per plan: O(1) per cell)."""
    cached = _SET_INDEX.get(id(plan))
    if cached is None or cached[0] is not plan:
        index = {Cell.from_dict(d).cell_id: cell_set_key(plan, d) for d in plan["cells"]}
        _SET_INDEX.clear()
        _SET_INDEX[id(plan)] = cached = (plan, index)
    return cached[1].get(cell.cell_id) or cell.depset().key


def plan_cells(plan: dict[str, Any], celery: str | None = None, set_key: str | None = None) -> list[Cell]:
    """Planned cells, optionally only one Celery version's or one dependency set's."""
    return [Cell.from_dict(c) for c in plan["cells"]
            if (celery is None or c["celery"] == celery)
            and (set_key is None or cell_set_key(plan, c) == set_key)]


def plan_sets(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{set key: DepSet dict} of a plan, oldest Celery first (plans from before sets: one per version)."""
    sets = plan.get("sets")
    if not sets:
        from lab.deps import DepSet
        sets = {v: DepSet.make(v, requested=plan.get("pins", {}).get(v)).to_dict() for v in plan["celery"]}
    return dict(sorted(sets.items(), key=lambda kv: (_vkey(kv[1]["celery"]), kv[0])))


def rerun_command(plan: dict[str, Any], cell: Cell) -> str:
    return f"nox -s cells -- --matrix {plan['matrix_path']} --only {cell.cell_id}"


def record_setup_failure(run_dir: Path, set_key: str, summary: str, detail: str, na: bool = False) -> int:
    """One record per not-yet-recorded cell of this set: `setup-failed` (n/a when `na`); returns the count.
    The scenario never ran, so nothing about Celery is concluded."""
    plan = load_plan(run_dir)
    done = done_cell_ids(run_dir)
    info = plan_sets(plan).get(set_key, {})
    count = 0
    for cell in plan_cells(plan, set_key=set_key):
        if cell.cell_id in done:
            continue
        if na:
            outcome = Outcome(Verdict.NA, summary, "interpreter-missing", {"key_figure": "no interpreter"},
                              {"setup_log": detail[-4000:]})
        else:
            outcome = setup_failed_outcome(summary, {"install_log": detail[-4000:],
                                                     "requirements": "\n".join(info.get("requirements", []))},
                                           "setup:install")
        append_record(run_dir, ResultRecord(
            run_id=plan["run_id"], cell_id=cell.cell_id, cell=cell.to_dict(), outcome=outcome,
            versions={},  # nothing was installed: the requested set is in environment, not here
            environment={"set": set_key, "requested_python": cell.python,
                         "requirements": info.get("requirements", [])},
            started_at=time.time(), rerun=rerun_command(plan, cell), lab_version=__version__))
        count += 1
    return count


def record_install_failure(run_dir: Path, celery: str, detail: str) -> int:
    """Compatibility: a plain Celery version that would not install (its default set)."""
    return record_setup_failure(run_dir, celery, f"celery=={celery} could not be installed", detail)
