"""Compare this run's records with a baseline run's: which cells changed.

Contract: `compare(current, baseline)` pairs records by `cell_id` (the stable
key from lab.matrix.Cell) and returns a `Diff` listing cells whose headline
verdict or signature changed, or whose set of findings changed (a second
finding appearing under the same headline is a change), cells new in this run and cells only in the
baseline. When a cell_id appears more than once on one side, the record
started last wins. `load_baseline(path)` accepts a run dir or a
results.jsonl path and reads only records. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.results import ResultRecord, read_records
from lab.verdict import SEVERITY, Verdict


@dataclass
class Change:
    cell_id: str
    scenario: str
    before: ResultRecord | None
    after: ResultRecord | None

    @property
    def before_verdict(self) -> Verdict | None:
        return self.before.outcome.verdict if self.before else None

    @property
    def after_verdict(self) -> Verdict | None:
        return self.after.outcome.verdict if self.after else None

    @property
    def kind(self) -> str:
        """'worse', 'better', 'changed' (same severity, other signature), 'new', 'gone'."""
        if self.before is None:
            return "new"
        if self.after is None:
            return "gone"
        if not (self.before_verdict.ran and self.after_verdict.ran):
            return "changed"  # a lab error or a setup failure says nothing either way
        before, after = self.before.outcome.finding_keys(), self.after.outcome.finding_keys()
        if before < after:
            return "worse"   # every finding is still there, and one more (e.g. tasks now also ran twice)
        if after < before:
            return "better"
        b, a = SEVERITY.index(self.before_verdict), SEVERITY.index(self.after_verdict)
        if a != b:
            return "worse" if a < b else "better"
        return "changed"

    @property
    def findings_added(self) -> list[str]:
        before = self.before.outcome.finding_keys() if self.before else frozenset()
        return sorted((self.after.outcome.finding_keys() if self.after else frozenset()) - before)

    @property
    def findings_removed(self) -> list[str]:
        after = self.after.outcome.finding_keys() if self.after else frozenset()
        return sorted((self.before.outcome.finding_keys() if self.before else frozenset()) - after)


@dataclass
class Diff:
    baseline: str
    changed: list[Change] = field(default_factory=list)
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.changed or self.added or self.removed)


def _latest(records: list[ResultRecord]) -> dict[str, ResultRecord]:
    by_id: dict[str, ResultRecord] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        by_id[record.cell_id] = record
    return by_id


def load_baseline(path: Path) -> list[ResultRecord]:
    return list(read_records([Path(path)]))


def compare(current: list[ResultRecord], baseline: list[ResultRecord], label: str = "") -> Diff:
    now, then = _latest(current), _latest(baseline)
    diff = Diff(baseline=label)
    for cell_id in sorted(set(now) | set(then)):
        after, before = now.get(cell_id), then.get(cell_id)
        scenario = str((after or before).cell.get("scenario", ""))
        change = Change(cell_id, scenario, before, after)
        if before is None:
            diff.added.append(change)
        elif after is None:
            diff.removed.append(change)
        elif ((before.outcome.verdict, before.outcome.signature) != (after.outcome.verdict, after.outcome.signature)
              or before.outcome.finding_keys() != after.outcome.finding_keys()):
            diff.changed.append(change)
        else:
            diff.unchanged += 1
    return diff
