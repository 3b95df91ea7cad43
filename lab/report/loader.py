"""Load run dirs into the report model (lab.report.model).

Contract: `load(run_dirs)` reads only `results.jsonl` (a torn last line is
skipped by `lab.results.read_records`) and `plan.json` when present, and
returns a `Report`. Every record becomes exactly one `Entry` and lands in
exactly one `TableCell`; cells planned in plan.json without a record become
"not run" placeholders. A flip is a change of headline verdict or of the set
of findings (lab errors, setup failures and n/a are not compared) between
adjacent tested versions in one column of one section. Nothing is run. Standard library only (plus lab.*).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from lab import catalog
from lab.matrix import Cell
from lab.results import PLAN_FILE, RESULTS_FILE, read_records
from lab.verdict import Verdict

from lab.report.model import (Entry, Flip, Report, RunInfo, ScenarioTable, Section, SignatureSeen,
                              TableCell, mark_version_deviations, slugify, version_key)


def _read_plan(run_dir: Path) -> dict[str, Any]:
    try:
        plan = json.loads((run_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def _load_run(path: Path) -> tuple[RunInfo, list[Entry]]:
    path = Path(path)
    run_dir = path if path.is_dir() or path.name != RESULTS_FILE else path.parent
    plan = _read_plan(run_dir)
    run = RunInfo(run_dir=run_dir, run_id=str(plan.get("run_id") or run_dir.name), plan=plan)
    entries = [Entry(record, run) for record in read_records([path])]
    records = [e.record for e in entries]
    run.records = len(records)
    if records:
        run.run_id = str(plan.get("run_id") or records[0].run_id or run.run_id)
    starts = [r.started_at for r in records if r.started_at]
    run.started_at = float(plan.get("started_at") or (min(starts) if starts else 0.0))
    ends = [r.started_at + r.duration_s for r in records if r.started_at]
    run.finished_at = max(ends) if ends else run.started_at
    run.host = dict(plan.get("host") or (records[0].host if records else {}))
    run.lab_version = next((r.lab_version for r in records if r.lab_version), "")
    run.matrix = str(plan.get("matrix") or "")
    run.matrix_path = str(plan.get("matrix_path") or "")
    return run, entries


def _assign_slugs(entries: list[Entry]) -> None:
    ids = Counter(e.record.cell_id for e in entries)
    used: set[str] = set()
    for entry in entries:
        base = entry.record.cell_id
        if ids[base] > 1:
            base = f"{base}--{entry.run.run_id}"
        slug, n = slugify(base), 1
        while slug in used:
            n += 1
            slug = f"{slugify(base)}-{n}"
        used.add(slug)
        entry.slug = slug


def _mark_flips(section: Section) -> None:
    for column in section.columns:
        previous: tuple[str, Verdict, frozenset] | None = None
        for row in section.rows:
            cell = section.cells.get((row, column))
            verdict = cell.verdict if cell else None
            if verdict is None or not verdict.is_finding:
                continue
            findings = cell.findings
            if previous and (previous[1] != verdict or previous[2] != findings):
                section.flips.append(Flip(column, previous[0], previous[1], row, verdict))
                gone, new = sorted(previous[2] - findings), sorted(findings - previous[2])
                cell.flip_from = (f"was {previous[1].value} in {previous[0]}" if previous[1] != verdict else
                                  f"findings changed since {previous[0]}: "
                                  + "; ".join([f"+{k}" for k in new] + [f"-{k}" for k in gone]))
            previous = (row, verdict, findings)


def _build_table(name: str, entries: list[Entry], planned: list[dict[str, Any]]) -> ScenarioTable:
    info = catalog.SCENARIOS.get(name)
    table = ScenarioTable(name, info.description if info else "(not in this lab's scenario catalog)")
    table.entries = entries
    sections: dict[tuple[str, str], Section] = {}

    def place(cell: dict[str, Any], entry: Entry | None) -> None:
        key = (str(cell.get("profile", "")), str(cell.get("mode", "")))
        section = sections.setdefault(key, Section(*key))
        row, column = str(cell.get("celery", "")), (str(cell.get("pool", "")), str(cell.get("broker", "")))
        target = section.cells.setdefault((row, column), TableCell())
        if entry:
            target.entries.append(entry)
        else:
            target.planned.append(cell)

    for entry in entries:
        place(entry.cell, entry)
    for cell in planned:
        place(cell, None)
    pool_order = {p: i for i, p in enumerate(catalog.POOLS)}
    broker_order = {b: i for i, b in enumerate(catalog.BROKERS)}
    profile_order = {p: i for i, p in enumerate(catalog.PROFILES)}
    modes = list(info.modes) if info else []

    def section_key(key: tuple[str, str]) -> tuple:
        return (profile_order.get(key[0], 99), key[0],
                modes.index(key[1]) if key[1] in modes else 99, key[1])

    for key in sorted(sections, key=section_key):
        section = sections[key]
        section.rows = sorted({r for r, _ in section.cells}, key=version_key)
        section.columns = sorted({c for _, c in section.cells}, key=lambda c: (
            pool_order.get(c[0], 99), c[0], broker_order.get(c[1], 99), c[1]))
        _mark_flips(section)
        table.sections.append(section)
    return table


def _signatures(entries: list[Entry]) -> list[SignatureSeen]:
    seen: dict[str, SignatureSeen] = {}
    tested: dict[str, set[str]] = {}
    for entry in entries:
        tested.setdefault(entry.axis("scenario"), set()).add(entry.axis("celery"))
        for name in entry.signatures:
            seen.setdefault(name, SignatureSeen(name)).entries.append(entry)
    for item in seen.values():
        item.versions = sorted({e.axis("celery") for e in item.entries}, key=version_key)
        item.scenarios = sorted({e.axis("scenario") for e in item.entries})
        universe = set().union(*(tested[s] for s in item.scenarios))
        item.absent = sorted(universe - set(item.versions), key=version_key)
    return sorted(seen.values(), key=lambda s: s.name)


def load(run_dirs: list[Path]) -> Report:
    runs, entries = [], []
    planned: dict[str, list[dict[str, Any]]] = {}
    for path in run_dirs:
        run, run_entries = _load_run(Path(path))
        runs.append(run)
        entries.extend(run_entries)
        done = {e.record.cell_id for e in run_entries}
        for cell in run.plan.get("cells") or []:
            if isinstance(cell, dict) and _cell_id(cell) not in done:
                planned.setdefault(str(cell.get("scenario", "")), []).append(cell)
    _assign_slugs(entries)
    mark_version_deviations(entries)
    by_scenario: dict[str, list[Entry]] = {}
    for entry in entries:
        by_scenario.setdefault(entry.axis("scenario"), []).append(entry)
    names = sorted(set(by_scenario) | set(planned))
    tables = [_build_table(n, by_scenario.get(n, []), planned.get(n, [])) for n in names]
    return Report(runs, entries, tables, _signatures(entries))


def _cell_id(cell: dict[str, Any]) -> str:
    try:
        return Cell.from_dict(cell).cell_id
    except TypeError:
        return ""
