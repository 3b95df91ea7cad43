"""`lab triage` and `lab bisect`: one scenario cell, one dependency set, N attempts.

Contract: triage builds a one-cell matrix (written beside its results as
triage.toml, so the run is reproducible) — Celery release, Python, pins
(`--pin NAME==VER`, over the lab's era pins, lab.deps.ERA_PINS), profiles and
pins borrowed from `--matrix FILE` — plans it, runs it through the `cells`
nox session (which builds the venv of exactly that set) and returns the
cell's ResultRecord: k/n per verdict and signature with Wilson intervals,
time to first reproduction. Bisect runs triage on released versions of
Celery, or of one dependency (`dependency=`) with Celery fixed, between a
good and a bad one. A side whose scenario never ran (lab.sides.never_ran:
setup failure, no worker ever ready, error, n/a) is neither good nor bad:
the bisect stops there and says so. The good side reads "not reproduced in
n attempts", never "fixed".
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab import deps, pkgindex
from lab.matrix import MatrixError, load_matrix, parse_matrix
from lab.plan import make_plan, write_plan
from lab.results import ResultRecord, create_run_dir, new_run_id, read_records
from lab.sides import never_ran
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
    python: str = deps.DEFAULT_PYTHON
    pins: dict = field(default_factory=dict)       # {name: version | "unpinned"}, over the era pins
    matrix_file: str | None = None                 # borrow [profiles] and [pins] from this matrix

    def borrowed(self) -> tuple[dict, dict]:
        """(profiles, pins for this Celery) of --matrix FILE; ({}, {}) without one."""
        if not self.matrix_file:
            return {}, {}
        source = load_matrix(self.matrix_file)
        profiles = {name: {k: v for k, v in table.items() if v or k == "description"}
                    for name, table in source.profiles.items()}
        return profiles, dict(source.pins.get(self.celery, {}))

    def matrix_data(self) -> dict:
        slice_ = {}
        if self.profile:
            slice_["profiles"] = [self.profile]
        if self.mode:
            slice_["modes"] = [self.mode]
        head = {"description": f"triage of {self.scenario}", "celery": [self.celery],
                "pools": [self.pool], "brokers": [self.broker], "backends": [self.backend],
                "scenarios": [self.scenario], "repeats": self.repeats, "lanes": 1}
        if self.python != deps.DEFAULT_PYTHON:
            head["python"] = [self.python]
        data = {"matrix": head}
        profiles, pins = self.borrowed()
        if profiles:
            data["profiles"] = profiles
        extra = pins.pop("extra", "").split()
        for name, version in self.pins.items():
            name = deps.canonical(name)
            if name in deps.DEPENDENCIES:
                pins[name] = version
            else:
                extra = [t for t in extra if not t.lower().startswith(name + "==")] + [f"{name}=={version}"]
        if extra:
            pins["extra"] = " ".join(extra)
        if pins:
            data["pins"] = {self.celery: pins}
        if slice_:
            data["scenario"] = {self.scenario: slice_}
        return data

    def toml(self) -> str:
        data = self.matrix_data()
        lines = ["[matrix]"] + [f"{k} = {_toml(v)}" for k, v in data["matrix"].items()]
        for name, table in data.get("profiles", {}).items():
            lines += ["", f'[profiles."{name}"]'] + [f"{k} = {_toml(v)}" for k, v in table.items()]
        for version, table in data.get("pins", {}).items():
            lines += ["", f'[pins."{version}"]'] + [f"{k} = {_toml(v)}" for k, v in table.items()]
        for name, opts in data.get("scenario", {}).items():
            lines += ["", f'[scenario."{name}"]'] + [f"{k} = {_toml(v)}" for k, v in opts.items()]
        return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_triage(spec: TriageSpec, reports: Path) -> ResultRecord:
    from lab.releases import check_releases

    matrix = parse_matrix(spec.matrix_data(), "(triage)", "triage")  # validates names first
    check_releases([spec.celery], reports / ".cache", "(triage)")  # a real release, before the run dir
    run_id = new_run_id()
    run_dir = create_run_dir(reports, run_id, point_latest=False)  # latest stays the last matrix run's report
    (run_dir / "triage.toml").write_text(spec.toml())
    matrix.path = str(run_dir / "triage.toml")
    write_plan(run_dir, make_plan(matrix, run_id))
    env = {**os.environ, "LAB_REPORTS_DIR": str(reports)}
    proc = subprocess.run(["nox", "-s", "cells", "--", "--run-dir", str(run_dir)], cwd=REPO, env=env)
    records = list(read_records([run_dir]))
    if not records:
        raise RuntimeError(f"triage produced no record (nox exited {proc.returncode}); see {run_dir}")
    return records[-1]


def describe(record: ResultRecord) -> list[str]:
    out = [f"{record.cell_id}: {record.outcome.verdict.value} — {record.outcome.summary}"]
    reason = never_ran(record)
    if reason:
        out.append(f"  THE SCENARIO NEVER RAN on this side ({reason}); this says nothing about the scenario")
    for rate in record.outcome.metrics.get("rates", []):
        label = rate["signature"] or rate["verdict"]
        out.append(f"  {label}: {describe_rate(rate['k'], rate['n'])}, first at attempt {rate['first_attempt']}")
    versions = record.versions or {}
    shown = ", ".join(f"{k} {versions[k]}" for k in ("python", "celery", *deps.DEPENDENCIES) if k in versions)
    out.append(f"  versions: {shown}")
    celery = str(record.cell.get("celery", ""))
    applied = {k: v for k, v in deps.era_pins(celery).items() if k not in (record.cell.get("deps") or {})}
    if applied:
        out.append(f"  era pins for celery {celery} ({', '.join(f'{k}=={v}' for k, v in applied.items())}): "
                   + " ".join(deps.era_reasons(celery)))
    out.append(f"  rerun: {record.rerun}")
    return out


def matches(record: ResultRecord, verdicts: list[str], signature: str | None) -> tuple[int, int]:
    """(k, n): attempts with at least one *finding* (not only the headline) that satisfies the
    bisect predicate — a verdict in `verdicts` (any, when empty) and, if given, that signature."""
    def fits(verdict: str, sig: str | None) -> bool:
        return (not verdicts or verdict in verdicts) and (signature is None or sig == signature)

    rates = record.outcome.metrics.get("rates")
    if not rates:  # one attempt: every finding it kept
        findings = record.outcome.findings or []
        hit = any(fits(f.verdict.value, f.signature) for f in findings) or (
            not findings and fits(record.outcome.verdict.value, record.outcome.signature))
        return int(hit), 1
    n = rates[0]["n"]
    hits: set[int] = set()
    for rate in rates:
        if fits(rate["verdict"], rate.get("signature")):
            hits.update(rate.get("attempts") or range(-rate["k"], 0))  # older records: no attempt list
    return min(len(hits), n), n


def released_versions(good: str, bad: str, explicit: list[str] | None = None,
                      package: str = "celery") -> list[str]:
    """Final releases of `package` from good to bad inclusive, oldest first (the index unless given)."""
    versions = explicit if explicit else pkgindex.list_versions(package)
    return pkgindex.between(versions, good, bad)


def decide(record: ResultRecord, verdicts: list[str], signature: str | None) -> tuple[bool | None, str]:
    """(True bad | False good | None never ran, words): the bisect predicate on one side's record."""
    reason = never_ran(record)
    if reason:
        return None, f"the scenario never ran ({reason})"
    k, n = matches(record, verdicts, signature)
    return k > 0, f"predicate held in {describe_rate(k, n)}"


def bisect(base: TriageSpec, good: str, bad: str, verdicts: list[str], signature: str | None,
           reports: Path, versions: list[str] | None = None, log=print, dependency: str | None = None) -> dict:
    """Binary search for the first version (of Celery, or of `dependency`) where the predicate held.

    Returns {"first_bad", "last_good", "observations", "note", "never_ran"}; when a side never ran the
    scenario the search stops there with "never_ran" = {version: reason} and first_bad/last_good None.
    Raises MatrixError when fewer than two releases lie between good and bad.
    """
    package = deps.DEPENDENCIES[dependency] if dependency else "celery"
    what = dependency or "celery"
    candidates = released_versions(good, bad, versions, package)
    if len(candidates) < 2:
        raise MatrixError("(bisect)", "--good/--bad", f"need two {package} releases between them, got {candidates}")
    bad_is_newer = pkgindex.version_key(bad) > pkgindex.version_key(good)
    seen: dict[str, tuple[int, int]] = {}
    skipped: dict[str, str] = {}
    sides: dict[str, str] = {}   # "bad"/"good" -> the version confirmed so far

    class NeverRan(Exception):
        pass

    def holds(version: str) -> bool:
        if dependency:
            spec = TriageSpec(**{**base.__dict__, "pins": {**base.pins, dependency: version}})
        else:
            spec = TriageSpec(**{**base.__dict__, "celery": version})
        record = run_triage(spec, reports)
        seen[version] = matches(record, verdicts, signature)
        verdict, words = decide(record, verdicts, signature)
        log(f"{what} {version}: {words}")
        if verdict is None:
            skipped[version] = words
            raise NeverRan(version)
        sides["bad" if verdict else "good"] = version   # the latest confirmation is nearest the boundary
        return verdict

    if not bad_is_newer:
        candidates.reverse()
    lo, hi = 0, len(candidates) - 1   # invariant: candidates[lo] good side, candidates[hi] bad side
    try:
        if not holds(candidates[hi]):
            return {"first_bad": None, "last_good": None, "observations": seen, "never_ran": skipped,
                    "note": f"the predicate did not hold on --bad {bad}: nothing to bisect"}
        if holds(candidates[lo]):
            return {"first_bad": candidates[lo], "last_good": None, "observations": seen, "never_ran": skipped,
                    "note": f"the predicate also held on --good {good}"}
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if holds(candidates[mid]):
                hi = mid
            else:
                lo = mid
    except NeverRan as stop:
        version = stop.args[0]
        return {"first_bad": None, "last_good": None, "observations": seen, "never_ran": skipped,
                "note": (f"bisect stopped: on {what} {version} {skipped[version]}; that side is neither good "
                         f"nor bad, so no boundary can be claimed (confirmed so far: bad {sides.get('bad', 'none')}, "
                         f"good {sides.get('good', 'none')}). Pin what it needs "
                         "(--pin NAME==VER) or pass --versions to skip it.")}
    return {"first_bad": candidates[hi], "last_good": candidates[lo], "observations": seen, "never_ran": skipped,
            "note": "the good side means 'not reproduced in n attempts', not 'fixed'"}
