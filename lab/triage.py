"""`lab triage` and `lab bisect`: one scenario cell, one Celery, N attempts.

Contract: triage builds a one-cell matrix (written beside its results as
triage.toml, so the run is reproducible), plans it, runs it through the
`cells-<version>` nox session (which owns the venv for that Celery) and
returns the cell's ResultRecord: k/n per verdict and signature with Wilson
intervals, time to first reproduction. Bisect runs triage on released
versions between a good and a bad one and reports the first version where
the predicate held and the last where it did not — saying "not reproduced
in n attempts", never "fixed", for the good side.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.matrix import MatrixError, parse_matrix
from lab.plan import make_plan, write_plan
from lab.results import ResultRecord, create_run_dir, new_run_id, read_records
from lab.verdict import describe_rate

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TriageSpec:
    scenario: str
    celery: str
    pool: str = "prefork"
    broker: str = "redis"
    backend: str = "auto"
    profile: str | None = None
    mode: str | None = None
    repeats: int = 10

    def matrix_data(self) -> dict:
        slice_ = {}
        if self.profile:
            slice_["profiles"] = [self.profile]
        if self.mode:
            slice_["modes"] = [self.mode]
        data = {"matrix": {"description": f"triage of {self.scenario}", "celery": [self.celery],
                           "pools": [self.pool], "brokers": [self.broker], "backends": [self.backend],
                           "scenarios": [self.scenario], "repeats": self.repeats, "lanes": 1}}
        if slice_:
            data["scenario"] = {self.scenario: slice_}
        return data

    def toml(self) -> str:
        data = self.matrix_data()
        head = data["matrix"]
        lines = ["[matrix]"] + [f"{k} = {_toml(v)}" for k, v in head.items()]
        for name, opts in data.get("scenario", {}).items():
            lines += ["", f'[scenario."{name}"]'] + [f"{k} = {_toml(v)}" for k, v in opts.items()]
        return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_triage(spec: TriageSpec, reports: Path) -> ResultRecord:
    from lab.releases import check_releases

    matrix = parse_matrix(spec.matrix_data(), "(triage)", "triage")  # validates names first
    check_releases([spec.celery], reports / ".cache", "(triage)")  # a real release, before the run dir
    run_id = new_run_id()
    run_dir = create_run_dir(reports, run_id)
    (run_dir / "triage.toml").write_text(spec.toml())
    matrix.path = str(run_dir / "triage.toml")
    write_plan(run_dir, make_plan(matrix, run_id))
    env = {**os.environ, "LAB_EXTRA_CELERY": spec.celery, "LAB_REPORTS_DIR": str(reports)}
    proc = subprocess.run(["nox", "-s", f"cells-{spec.celery}", "--", "--run-dir", str(run_dir)],
                          cwd=REPO, env=env)
    records = list(read_records([run_dir]))
    if not records:
        raise RuntimeError(f"triage produced no record (nox exited {proc.returncode}); see {run_dir}")
    return records[-1]


def describe(record: ResultRecord) -> list[str]:
    out = [f"{record.cell_id}: {record.outcome.verdict.value} — {record.outcome.summary}"]
    for rate in record.outcome.metrics.get("rates", []):
        label = rate["signature"] or rate["verdict"]
        out.append(f"  {label}: {describe_rate(rate['k'], rate['n'])}, first at attempt {rate['first_attempt']}")
    out.append(f"  rerun: {record.rerun}")
    return out


def matches(record: ResultRecord, verdicts: list[str], signature: str | None) -> tuple[int, int]:
    """(k, n): attempts whose verdict/signature satisfy the bisect predicate."""
    rates = record.outcome.metrics.get("rates") or [{
        "verdict": record.outcome.verdict.value, "signature": record.outcome.signature, "k": 1, "n": 1}]
    n = rates[0]["n"]
    k = sum(r["k"] for r in rates if (not verdicts or r["verdict"] in verdicts)
            and (signature is None or r["signature"] == signature))
    return k, n


def released_versions(good: str, bad: str, explicit: list[str] | None = None) -> list[str]:
    """Final releases from good to bad inclusive, oldest first (PyPI unless given)."""
    key = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    if explicit:
        versions = explicit
    else:
        out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "celery"],
                             capture_output=True, text=True, timeout=120).stdout
        found = re.search(r"Available versions: (.*)", out)
        if not found:
            raise MatrixError("(bisect)", "--versions", "could not list Celery releases; pass --versions")
        versions = [v.strip() for v in found.group(1).split(",")]
    finals = [v for v in versions if re.fullmatch(r"\d+(\.\d+)+", v)]
    low, high = sorted((good, bad), key=key)
    return sorted((v for v in finals if key(low) <= key(v) <= key(high)), key=key)


def bisect(base: TriageSpec, good: str, bad: str, verdicts: list[str], signature: str | None,
           reports: Path, versions: list[str] | None = None, log=print) -> dict:
    """Binary search for the first version where the predicate held."""
    candidates = released_versions(good, bad, versions)
    if len(candidates) < 2:
        raise MatrixError("(bisect)", "--good/--bad", f"need two releases between them, got {candidates}")
    bad_is_newer = candidates[-1] == bad or candidates.index(bad) > candidates.index(good)
    seen: dict[str, tuple[int, int]] = {}

    def holds(version: str) -> bool:
        record = run_triage(TriageSpec(**{**base.__dict__, "celery": version}), reports)
        seen[version] = matches(record, verdicts, signature)
        k, n = seen[version]
        log(f"celery {version}: predicate held in {describe_rate(k, n)}")
        return k > 0

    if not bad_is_newer:
        candidates.reverse()
    lo, hi = 0, len(candidates) - 1   # invariant: candidates[lo] good side, candidates[hi] bad side
    if not holds(candidates[hi]):
        return {"first_bad": None, "last_good": None, "observations": seen,
                "note": f"the predicate did not hold on --bad {bad}: nothing to bisect"}
    if holds(candidates[lo]):
        return {"first_bad": candidates[lo], "last_good": None, "observations": seen,
                "note": f"the predicate also held on --good {good}"}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(candidates[mid]):
            hi = mid
        else:
            lo = mid
    return {"first_bad": candidates[hi], "last_good": candidates[lo], "observations": seen,
            "note": "the good side means 'not reproduced in n attempts', not 'fixed'"}
