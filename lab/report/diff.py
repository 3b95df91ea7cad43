"""Compare this run's records with a baseline run's: which cells changed.

Contract: `compare(current, baseline, label, date)` pairs records by `cell_id`
(the stable key from lab.matrix.Cell) and returns a `Diff` listing cells
whose headline verdict or signature changed, or whose set of findings
changed (a second finding under the same headline is a change: a strict
superset is worse, a strict subset better), cells new in this run and cells
only in the baseline; `Diff.worse` / `better` / `new` / `gone` are the
counts the banners show, and `Diff.by_cell` maps a cell id to its Change.
When a cell_id appears more than once on one side, the record started last
wins. `load_baseline(path)` accepts a run dir or a results.jsonl path and
reads only records; `baseline_info(path, records)` names it (run id, start
time); `previous_run(runs_root, exclude)` is the newest other run dir under
reports/runs holding records (for `--baseline previous`). Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lab.results import PLAN_FILE, RESULTS_FILE, ResultRecord, read_records

from lab.report.style import is_lab_failure, severity


@dataclass
class Change:
    cell_id: str
    scenario: str
    before: ResultRecord | None
    after: ResultRecord | None

    @property
    def before_verdict(self):
        return self.before.outcome.verdict if self.before else None

    @property
    def after_verdict(self):
        return self.after.outcome.verdict if self.after else None

    @property
    def kind(self) -> str:
        """'worse', 'better', 'changed' (same severity, other signature, or a lab failure), 'new', 'gone'."""
        if self.before is None:
            return "new"
        if self.after is None:
            return "gone"
        if is_lab_failure(self.before_verdict) or is_lab_failure(self.after_verdict):
            return "changed"   # a lab error or a setup failure says nothing either way
        before, after = _keys(self.before), _keys(self.after)
        if before < after:
            return "worse"     # every finding is still there, and one more
        if after < before:
            return "better"
        b, a = severity(self.before_verdict), severity(self.after_verdict)
        if a == b:
            return "changed"
        return "worse" if a < b else "better"

    @property
    def findings_added(self) -> list[str]:
        return sorted(_keys(self.after) - _keys(self.before))

    @property
    def findings_removed(self) -> list[str]:
        return sorted(_keys(self.before) - _keys(self.after))

    @property
    def text(self) -> str:
        """"was pass, now stall" style words for chips and lists."""
        if self.before is None:
            return "new in this run"
        if self.after is None:
            return f"only in the baseline ({self.before_verdict.value})"
        before = self.before_verdict.value + (f" {self.before.outcome.signature}" if self.before.outcome.signature else "")
        return f"{self.kind}: was {before}"


@dataclass
class Diff:
    baseline: str
    date: float = 0.0
    changed: list[Change] = field(default_factory=list)
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def _kind(self, kind: str) -> list[Change]:
        return [c for c in self.changed if c.kind == kind]

    @property
    def worse(self) -> list[Change]:
        return self._kind("worse")

    @property
    def better(self) -> list[Change]:
        return self._kind("better")

    @property
    def other(self) -> list[Change]:
        return self._kind("changed")

    @property
    def by_cell(self) -> dict[str, Change]:
        return {c.cell_id: c for c in self.changed + self.added}


def _keys(record: ResultRecord | None) -> frozenset:
    """The record's finding keys ('verdict:signature'); older Outcomes without them: the headline."""
    if record is None:
        return frozenset()
    keys = getattr(record.outcome, "finding_keys", None)
    if callable(keys):
        return frozenset(keys())
    return frozenset({f"{record.outcome.verdict.value}:{record.outcome.signature or ''}"})


def _latest(records: list[ResultRecord]) -> dict[str, ResultRecord]:
    by_id: dict[str, ResultRecord] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        by_id[record.cell_id] = record
    return by_id


def load_baseline(path: Path) -> list[ResultRecord]:
    return list(read_records([Path(path)]))


def baseline_info(path: Path, records: list[ResultRecord]) -> tuple[str, float]:
    """(run id, start time) of a baseline run dir: plan.json first, then its records."""
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        plan = json.loads((run_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        plan = {}
    plan = plan if isinstance(plan, dict) else {}
    run_id = str(plan.get("run_id") or next((r.run_id for r in records if r.run_id), "") or run_dir.name)
    starts = [r.started_at for r in records if r.started_at]
    return run_id, float(plan.get("started_at") or (min(starts) if starts else 0.0))


def previous_run(runs_root: Path, exclude: list[Path]) -> Path | None:
    """The newest run dir under `runs_root` with records, other than `exclude` (None if none)."""
    skip = {Path(p).resolve() for p in exclude}
    candidates = []
    for run_dir in Path(runs_root).glob("*/"):
        results = run_dir / RESULTS_FILE
        if run_dir.resolve() in skip or not results.is_file() or results.stat().st_size == 0:
            continue
        _, started = baseline_info(run_dir, [])
        candidates.append((started or results.stat().st_mtime, run_dir.name, run_dir))
    return max(candidates)[2] if candidates else None


def compare(current: list[ResultRecord], baseline: list[ResultRecord], label: str = "",
            date: float = 0.0) -> Diff:
    now, then = _latest(current), _latest(baseline)
    diff = Diff(baseline=label, date=date)
    for cell_id in sorted(set(now) | set(then)):
        after, before = now.get(cell_id), then.get(cell_id)
        scenario = str((after or before).cell.get("scenario", ""))
        change = Change(cell_id, scenario, before, after)
        if before is None:
            diff.added.append(change)
        elif after is None:
            diff.removed.append(change)
        elif ((before.outcome.verdict, before.outcome.signature) != (after.outcome.verdict, after.outcome.signature)
              or _keys(before) != _keys(after)):
            diff.changed.append(change)
        else:
            diff.unchanged += 1
    return diff
