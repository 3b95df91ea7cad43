"""The report's data model: what the pages show, with no HTML and no I/O.

Contract: a `Report` holds the runs, one `Entry` per result record (each with
a unique `slug`; its cell page is `cells/<slug>.html`) and one
`ScenarioTable` per scenario: sections = (profile, mode), rows = Celery
versions in version order, columns = (pool, broker), each table cell a
`TableCell` holding its entries (and "not run" placeholders from plan.json).
`key_figure(record)` is the short text of an overview cell:
`metrics["key_figure"]`, else k/n of the headline rate, else "". Built by
`lab.report.loader.load`. `findings(record)` is every finding of a record
(outcome.findings when present, else the headline). `Entry.label` is a
chip's accessible name. Standard library only (plus lab.*).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.results import ResultRecord
from lab.verdict import Verdict

from lab.report.style import VERDICT_ORDER, severity, style


@dataclass
class RunInfo:
    run_dir: Path
    run_id: str
    plan: dict[str, Any]
    records: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)
    lab_version: str = ""
    matrix: str = ""
    matrix_path: str = ""

    @property
    def wall_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    @property
    def planned(self) -> int:
        return len(self.plan.get("cells") or [])


@dataclass
class Entry:
    """One result record as the report sees it."""

    record: ResultRecord
    run: RunInfo
    slug: str = ""
    deps_differ: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (this, common)

    @property
    def versions_text(self) -> str:
        return versions_text(self.record)

    @property
    def axis_flags(self) -> str:
        """' --python 3.8 --pin billiard==4.2.4' for `lab triage`/`bisect` ('' for the default set)."""
        cell = self.record.cell
        flags = [f" --python {cell['python']}"] if cell.get("python") not in (None, "", "default") else []
        flags += [f" --pin {k}=={v}" for k, v in sorted((cell.get("deps") or {}).items())]
        return "".join(flags)

    @property
    def axes_text(self) -> str:
        """The cell's non-default Python / pins ('py3.8 · billiard 4.2.0'), '' for the lab's default set."""
        cell = self.record.cell
        parts = [f"py{cell['python']}"] if cell.get("python") not in (None, "", "default") else []
        parts += [f"{k} {v}" for k, v in sorted((cell.get("deps") or {}).items())]
        return " · ".join(parts)

    @property
    def cell(self) -> dict[str, Any]:
        return self.record.cell

    def axis(self, name: str) -> str:
        return str(self.record.cell.get(name, ""))

    @property
    def verdict(self) -> Verdict:
        return self.record.outcome.verdict

    @property
    def page(self) -> str:
        return f"cells/{self.slug}.html"

    @property
    def key_figure(self) -> str:
        return key_figure(self.record)

    @property
    def signatures(self) -> list[str]:
        """The headline signature, every finding's, and any other one seen in repeated attempts."""
        names = [self.record.outcome.signature]
        names += [f["signature"] for f in findings(self.record)]
        names += [r.get("signature") for r in rates(self.record)]
        return [n for i, n in enumerate(names) if n and n not in names[:i]]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return findings(self.record)

    @property
    def label(self) -> str:
        """Accessible name: "5.6.2 prefork redis acks-late: stall 112 s"."""
        parts = [self.axis("celery"), self.axis("pool"), self.axis("broker")]
        parts += [p for p in (self.axis("profile"), self.axis("mode")) if p not in ("", "defaults", "default")]
        figure = self.key_figure
        text = style(self.verdict).label
        if figure and not figure.startswith(text.split()[0]):
            text = f"{text} {figure}"
        elif figure:
            text = figure
        return " ".join(p for p in parts if p) + ": " + text


@dataclass
class TableCell:
    entries: list[Entry] = field(default_factory=list)
    planned: list[dict[str, Any]] = field(default_factory=list)
    flip_from: str = ""

    @property
    def verdict(self) -> Verdict | None:
        if not self.entries:
            return None
        return min((e.verdict for e in self.entries), key=severity)

    @property
    def findings(self) -> frozenset[str]:
        """Every finding ('verdict:signature') of the cell's records: what flips compare."""
        return frozenset().union(*(finding_keys(e.record) for e in self.entries))


@dataclass
class Flip:
    column: tuple[str, str]
    before: str
    before_verdict: Verdict
    after: str
    after_verdict: Verdict


@dataclass
class Section:
    profile: str
    mode: str
    rows: list[str] = field(default_factory=list)
    columns: list[tuple[str, str]] = field(default_factory=list)
    cells: dict[tuple[str, tuple[str, str]], TableCell] = field(default_factory=dict)
    flips: list[Flip] = field(default_factory=list)

    @property
    def pool_groups(self) -> list[tuple[str, int]]:
        groups: list[tuple[str, int]] = []
        for pool, _ in self.columns:
            if groups and groups[-1][0] == pool:
                groups[-1] = (pool, groups[-1][1] + 1)
            else:
                groups.append((pool, 1))
        return groups

    def at(self, row: str, column: tuple[str, str]) -> TableCell:
        return self.cells.get((row, column)) or TableCell()


@dataclass
class ScenarioTable:
    name: str
    description: str
    sections: list[Section] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"scenario-{slugify(self.name)}.html"

    @property
    def counts(self) -> dict[Verdict, int]:
        return count_verdicts(self.entries)

    @property
    def flips(self) -> list[tuple[Section, Flip]]:
        return [(s, f) for s in self.sections for f in s.flips]


@dataclass
class SignatureSeen:
    name: str
    entries: list[Entry] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)   # versions tested, never seen
    scenarios: list[str] = field(default_factory=list)


@dataclass
class Report:
    runs: list[RunInfo]
    entries: list[Entry]
    scenarios: list[ScenarioTable]
    signatures: list[SignatureSeen]

    @property
    def counts(self) -> dict[Verdict, int]:
        return count_verdicts(self.entries)

    @property
    def common_versions(self) -> list[tuple[str, str]]:
        """(Celery version, its cells' most common package versions as text), oldest Celery first."""
        return common_versions(self.entries)

    @property
    def wall_s(self) -> float:
        """Wall time: runs of one sharded plan ran side by side, so a plan counts its longest shard."""
        by_plan: dict[str, float] = {}
        for run in self.runs:
            shard = run.plan.get("shard") or {}
            key = shard.get("plan_id") or run.run_id
            by_plan[key] = max(by_plan.get(key, 0.0), run.wall_s)
        return sum(by_plan.values())

    @property
    def shard_notes(self) -> list[str]:
        """One line per sharded plan: which of its shards this report merges, and which are missing."""
        plans: dict[str, dict[str, Any]] = {}
        for run in self.runs:
            shard = run.plan.get("shard") or {}
            if not shard.get("plan_id"):
                continue
            item = plans.setdefault(shard["plan_id"], {"of": shard["of"], "seen": set(), "cells": 0,
                                                       "total": shard.get("cells_total", 0)})
            item["seen"].add(int(shard["index"]))
            item["cells"] += run.planned
        notes = []
        for pid, item in sorted(plans.items()):
            count = item["of"]
            missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in item["seen"]]
            notes.append(f"plan {pid}: {len(item['seen'])} of {count} shard(s) merged, "
                         f"{item['cells']} of {item['total']} cells planned"
                         + (f"; missing shard(s) {', '.join(missing)}" if missing else ""))
        return notes


def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "cell"


def version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+]", version))


def count_verdicts(entries: list[Entry]) -> dict[Verdict, int]:
    counts = Counter(e.verdict for e in entries)
    return {v: counts[v] for v in VERDICT_ORDER if counts[v]}


def rates(record: ResultRecord) -> list[dict[str, Any]]:
    """metrics["rates"] of a repeated cell (only well-formed rows)."""
    value = record.outcome.metrics.get("rates")
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def finding_keys(record: ResultRecord) -> frozenset[str]:
    """'verdict:signature' of every finding (lab.verdict's Outcome.finding_keys when it has it)."""
    keys = getattr(record.outcome, "finding_keys", None)
    if callable(keys):
        return frozenset(keys())
    return frozenset(f"{f['verdict']}:{f['signature'] or ''}" for f in findings(record))


def findings(record: ResultRecord) -> list[dict[str, Any]]:
    """Every finding of a record as dicts {verdict, signature, summary, evidence}.

    Reads `outcome.findings` (objects or dicts) when the record has them; otherwise the
    headline alone. Verdicts stay strings, so one this lab does not know still renders.
    """
    outcome = record.outcome
    raw = getattr(outcome, "findings", None)
    out = []
    for item in raw if isinstance(raw, list) else []:
        get = item.get if isinstance(item, dict) else (lambda k, d=None, i=item: getattr(i, k, d))
        verdict = get("verdict", "")
        out.append({"verdict": getattr(verdict, "value", str(verdict or "")), "signature": get("signature"),
                    "summary": str(get("summary", "") or ""), "evidence": get("evidence") or {}})
    if not out:
        out.append({"verdict": outcome.verdict.value, "signature": outcome.signature,
                    "summary": outcome.summary, "evidence": outcome.evidence})
    return out


def key_figure(record: ResultRecord) -> str:
    """The short text shown in an overview cell."""
    outcome = record.outcome
    figure = outcome.metrics.get("key_figure")
    if figure not in (None, ""):
        return str(figure)
    for rate in rates(record):
        if rate.get("verdict") == outcome.verdict.value and rate.get("signature") == outcome.signature:
            return f"{rate.get('k')}/{rate.get('n')}"
    return ""


VERSION_KEYS = ("python", "kombu", "billiard", "redis", "amqp", "vine", "gevent", "eventlet", "sqlalchemy")


def versions_text(record: ResultRecord) -> str:
    """'python 3.11.7 · kombu 5.6.2 · billiard 4.2.4 …' from record.versions (what really ran)."""
    versions = record.versions or {}
    return " · ".join(f"{k} {versions[k]}" for k in VERSION_KEYS
                      if versions.get(k) and versions[k] != "not installed")


def _by_celery(entries: list[Entry]) -> dict[str, list[Entry]]:
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.record.versions:   # a set that never installed has none: nothing to compare
            groups.setdefault(entry.axis("celery"), []).append(entry)
    return groups


def _common(group: list[Entry]) -> dict[str, str]:
    """Per package, the most common version among these entries' records."""
    out = {}
    for key in VERSION_KEYS:
        values = Counter(str(e.record.versions[key]) for e in group
                         if e.record.versions.get(key) and e.record.versions[key] != "not installed")
        if values:
            out[key] = values.most_common(1)[0][0]
    return out


def common_versions(entries: list[Entry]) -> list[tuple[str, str]]:
    """(Celery version, 'python 3.11.7 · kombu 5.7.0 · …') of the run's common set, oldest first."""
    groups = _by_celery(entries)
    return [(celery, " · ".join(f"{k} {v}" for k, v in _common(groups[celery]).items()))
            for celery in sorted(groups, key=version_key)]


def mark_version_deviations(entries: list[Entry]) -> None:
    """Set each entry's `deps_differ`: the packages whose version differs from the most common one
    among the records of the same Celery version (the run's common set), as name -> (this, common).
    Records without versions (e.g. a set that never installed) are not compared."""
    for group in _by_celery(entries).values():
        common = _common(group)
        for entry in group:
            for key, value in common.items():
                have = entry.record.versions.get(key)
                if have and have != "not installed" and str(have) != value:
                    entry.deps_differ[key] = (str(have), value)
