"""Where a signature reproduces: k/n and a Wilson interval per Celery version over exact slices.

Contract: `signature_slices(name, entries)` groups every record of the report
by its slice — (scenario, mode, profile, pool, broker, backend) — and keeps
the slices where `name` was seen at least once. Each `Slice` has one `Row`
per Celery version *tested in that exact slice*, with k (attempts showing the
signature), n (attempts), the 95% Wilson interval, the dependency versions
the record resolved (kombu, billiard, python, broker server) and the cells.
So "tested, not seen" (k = 0) appears only where that slice ran. `first_bad`
/ `last_good` are read off adjacent tested versions, as the run shows them
(never "fixed": a 0/n is "not reproduced in n attempts"). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.verdict import wilson_interval

from lab.report.model import Entry, rates, version_key

SLICE_AXES = ("scenario", "mode", "profile", "pool", "broker", "backend")
DEPENDENCIES = ("kombu", "billiard", "python", "broker_server")


@dataclass
class Row:
    version: str
    k: int = 0
    n: int = 0
    entries: list[Entry] = field(default_factory=list)
    deps: dict[str, str] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)   # other signatures the same cells showed

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    @property
    def words(self) -> str:
        low, high = self.interval
        if self.n == 0:
            return "no attempt"
        if self.k == 0:
            return f"not reproduced in {self.n} attempt{'s' if self.n != 1 else ''} (rate below {high:.0%})"
        return f"{self.k}/{self.n} ({low:.0%}–{high:.0%}, 95% CI)"


@dataclass
class Slice:
    key: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " · ".join(f"{axis} {value}" for axis, value in zip(SLICE_AXES, self.key) if value)

    @property
    def first_bad(self) -> str:
        for before, after in zip(self.rows, self.rows[1:]):
            if before.k == 0 and before.n and after.k:
                return after.version
        return ""

    @property
    def last_good(self) -> str:
        bad = self.first_bad
        previous = [r.version for r in self.rows if r.version != bad and version_key(r.version) < version_key(bad)]
        return previous[-1] if bad and previous else ""


def _attempts(entry: Entry, name: str) -> tuple[int, int]:
    rows = rates(entry.record)
    if rows:
        n = max(int(r.get("n") or 0) for r in rows)
        k = sum(int(r.get("k") or 0) for r in rows if r.get("signature") == name)
        if name in entry.signatures and not k:
            k = 1   # a finding named it without a rate row: at least one attempt
        return k, n
    n = int(entry.record.outcome.metrics.get("attempts") or 1)
    return (n if name in entry.signatures else 0), n


def signature_slices(name: str, entries: list[Entry]) -> list[Slice]:
    """The slices where `name` was seen, each with one Row per Celery version that ran it."""
    by_key: dict[tuple[str, ...], list[Entry]] = {}
    for entry in entries:
        if entry.verdict.value in ("error", "setup-failed", "n/a"):
            continue   # nothing was observed there
        by_key.setdefault(tuple(entry.axis(a) for a in SLICE_AXES), []).append(entry)
    out = []
    for key, group in sorted(by_key.items()):
        if not any(name in e.signatures for e in group):
            continue
        rows: dict[str, Row] = {}
        for entry in group:
            row = rows.setdefault(entry.axis("celery"), Row(entry.axis("celery")))
            k, n = _attempts(entry, name)
            row.k, row.n = row.k + k, row.n + n
            row.entries.append(entry)
            row.deps = {d: str(entry.record.versions.get(d, "")) for d in DEPENDENCIES
                        if entry.record.versions.get(d)}
            row.others += [n for n in entry.signatures if n != name and n not in row.others]
        out.append(Slice(key, sorted(rows.values(), key=lambda r: version_key(r.version))))
    return out
