"""Run a plan's dependency sets: one venv per exact set, then all their cells in one schedule.

Contract: `run_sets(run_dir, keys, only)` walks the plan's dependency sets
(oldest Celery first), skipping sets whose cells are all recorded, and
builds or reuses each set's own venv (lab.venvs.ensure_venv: reused only for
the identical set). Then it runs every remaining cell of every set in ONE
schedule (lab.runner.run_cells with {set: venv python}: longest estimate
first, lanes by load; each cell forked from its set's cell server). A
missing interpreter turns the set's cells into `n/a` records with the
reason; a set that will not resolve or install turns them into
`setup-failed` records naming the conflict. Never raises for a bad set;
returns one line per set (what happened, venv seconds) for the caller to
print. The exit status of a cell run is not an error here (records are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from lab.deps import DepSet
from lab.interpreters import InterpreterMissing
from lab.plan import load_plan, plan_cells, plan_sets, record_setup_failure
from lab.results import done_cell_ids
from lab.venvs import SetupFailed, default_root, ensure_venv


def conflict(text: str) -> str:
    """The line of an installer's output that names the conflict (else its last line)."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for needle in ("because", "depends on", "no matching distribution", "could not find", "requires python",
                   "error:"):
        found = [l for l in lines if needle in l.lower() and "No solution found" not in l]
        if found:
            text = " ".join(found[:2]) if needle == "because" else found[0]
            return text.replace("cause: ", "")[:300]
    return lines[-1][:300] if lines else "(no output)"


def sets_to_run(plan: dict, keys: Optional[List[str]] = None, only: Optional[List[str]] = None,
                done: Optional[set] = None) -> List[str]:
    """Set keys with at least one planned, unrecorded cell (restricted to `keys` / `only` cell ids)."""
    out = []
    for key in plan_sets(plan):
        if keys and key not in keys:
            continue
        pending = [c for c in plan_cells(plan, set_key=key)
                   if c.cell_id not in (done or set()) and (not only or c.cell_id in only)]
        if pending:
            out.append(key)
    return out


def run_sets(run_dir: Path, keys: Optional[List[str]] = None, only: Optional[List[str]] = None,
             venv_root: Optional[Path] = None, log: Callable[[str], None] = print,
             lanes: Union[int, str, None] = None) -> List[str]:
    run_dir = Path(run_dir).resolve()
    plan = load_plan(run_dir)
    sets = plan_sets(plan)
    unknown = sorted(set(keys or []) - set(sets))
    if unknown:
        raise KeyError(f"--set {', '.join(unknown)}: not in this plan; its sets: {', '.join(sets)}")
    lines: List[str] = []
    pythons: Dict[str, str] = {}
    for key in sets_to_run(plan, keys, only, done_cell_ids(run_dir)):
        depset = DepSet.from_dict(sets[key])
        try:
            venv = ensure_venv(depset, venv_root or default_root(), log=log)
        except InterpreterMissing as exc:
            count = record_setup_failure(run_dir, key, f"n/a: {exc}"[:300], str(exc), na=True)
            lines.append(f"set {key}: {count} cell(s) n/a: {exc}")
            log(lines[-1])
            continue
        except SetupFailed as exc:
            summary = f"the scenario never ran: set {key} could not be installed: {conflict(str(exc))}"
            count = record_setup_failure(run_dir, key, summary[:400], str(exc))
            lines.append(f"set {key}: {count} cell(s) setup-failed: {conflict(str(exc))}")
            log(lines[-1])
            continue
        log(f"set {key}: venv {venv.path} ({'created' if venv.created else 'reused'} in {venv.seconds:.1f}s, "
            f"python {venv.version})")
        pythons[key] = str(venv.python)
        lines.append(f"set {key}: venv {'created' if venv.created else 'reused'} in {venv.seconds:.1f}s")
    if pythons:  # one schedule over every set: longest cells first, lanes by load (lab.runner)
        from lab.runner import run_cells
        run_cells(run_dir, only=only or None, lanes=lanes, pythons=pythons)
    return lines
