"""Machine-readable outputs beside the HTML: results.json, junit.xml, summary.md.

Contract:
- `summary_rows(records)` -> one tuple per scenario, `(scenario, cells,
  *counts)` with counts in `SUMMARY_HEADER` order (lab.report.style
  VERDICT_ORDER), plus a final "all" row when there is more than one scenario.
- `junit_xml(report, strict)`: one <testcase> per record. A lab `error` is a
  JUnit <error>; `n/a` is <skipped>; every finding (pass included) carries
  <properties> (verdict, signature, summary, key_figure, rerun) and is NOT a
  failure, unless `strict=True`, which makes every non-pass finding a
  <failure>. All text is XML-escaped and stripped of characters XML 1.0
  forbids.
- `summary_md(report, diff)`: GitHub-flavoured markdown for CI step
  summaries; user text is escaped so it cannot break the tables or inject HTML.
- `results_json(report, diff)`: every record plus run metadata and counts.
Standard library only.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any, Iterable

from lab.results import ResultRecord
from lab.verdict import Verdict

from lab.report.diff import Diff
from lab.report.model import Report
from lab.report.style import VERDICT_ORDER, VERDICT_STYLE

SUMMARY_HEADER = ("scenario", "cells", *(v.value for v in VERDICT_ORDER))
_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
MD_LIST_LIMIT = 40


def summary_rows(records: Iterable[ResultRecord]) -> list[tuple]:
    """Verdict counts per scenario, for the CLI's table (see SUMMARY_HEADER)."""
    per: dict[str, Counter] = {}
    for record in records:
        per.setdefault(str(record.cell.get("scenario", "")), Counter())[record.outcome.verdict] += 1
    rows = [(name, sum(c.values()), *(c[v] for v in VERDICT_ORDER)) for name, c in sorted(per.items())]
    if len(rows) > 1:
        total = sum(per.values(), Counter())
        rows.append(("all", sum(total.values()), *(total[v] for v in VERDICT_ORDER)))
    return rows


def _xml_text(value: Any) -> str:
    return _XML_BAD.sub("\ufffd", "" if value is None else str(value))


def junit_xml(report: Report, strict: bool = False) -> str:
    root = ET.Element("testsuites", name="celery-lifecycle-lab")
    totals = Counter()
    for table in report.scenarios:
        if not table.entries:
            continue
        suite = ET.SubElement(root, "testsuite", name=_xml_text(table.name))
        counts = Counter()
        started = min((e.record.started_at for e in table.entries if e.record.started_at), default=0)
        for entry in table.entries:
            record, outcome = entry.record, entry.record.outcome
            cell = record.cell
            case = ET.SubElement(suite, "testcase", name=_xml_text(record.cell_id), time=f"{record.duration_s:.3f}",
                                 classname=_xml_text(f"lab.{table.name}.{cell.get('profile', '')}.{cell.get('mode', '')}"))
            props = ET.SubElement(case, "properties")
            for name, value in (("verdict", outcome.verdict.value), ("signature", outcome.signature),
                                ("summary", outcome.summary), ("key_figure", entry.key_figure),
                                ("also", ",".join(outcome.also)), ("run_id", record.run_id),
                                ("rerun", record.rerun)):
                if value:
                    ET.SubElement(props, "property", name=name, value=_xml_text(value))
            message = _xml_text(f"{outcome.verdict.value}: {outcome.summary}")
            if outcome.verdict is Verdict.ERROR:
                node = ET.SubElement(case, "error", message=message, type="lab-error")
                node.text = _xml_text("\n\n".join(
                    [outcome.summary] + [f"{k}:\n{v}" for k, v in outcome.evidence.items()]))
                counts["errors"] += 1
            elif outcome.verdict is Verdict.NA:
                ET.SubElement(case, "skipped", message=message)
                counts["skipped"] += 1
            elif strict and outcome.verdict is not Verdict.PASS:
                node = ET.SubElement(case, "failure", message=message, type=outcome.verdict.value)
                node.text = _xml_text(outcome.signature or outcome.summary)
                counts["failures"] += 1
            if record.rerun:
                ET.SubElement(case, "system-out").text = _xml_text(f"rerun: {record.rerun}")
            counts["tests"] += 1
            counts["time"] += record.duration_s
        suite.set("tests", str(counts["tests"]))
        for key in ("errors", "failures", "skipped"):
            suite.set(key, str(counts[key]))
        suite.set("time", f"{counts['time']:.3f}")
        if started:
            suite.set("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)))
        totals.update(counts)
    for key in ("tests", "errors", "failures", "skipped"):
        root.set(key, str(totals[key]))
    root.set("time", f"{totals['time']:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def md_escape(value: Any) -> str:
    text = " ".join(str(value or "").split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([|`*_\[\]\\])", r"\\\1", text)


def md_code(value: Any) -> str:
    """An inline code span (no escaping inside code spans; backticks cannot end it early)."""
    return "`" + " ".join(str(value or "").replace("`", "'").split()) + "`"


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds or 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def _bullets(items: list[str]) -> list[str]:
    lines = items[:MD_LIST_LIMIT]
    if len(items) > MD_LIST_LIMIT:
        lines.append(f"- … and {len(items) - MD_LIST_LIMIT} more (see the HTML report)")
    return lines


def summary_md(report: Report, diff: Diff | None = None) -> str:
    runs = ", ".join(f"{md_code(r.run_id)}" for r in report.runs) or "(no run)"
    lines = [f"## Celery lifecycle lab: {runs}", ""]
    for run in report.runs:
        host = run.host
        lines.append(f"- run {md_code(run.run_id)}: {run.records} of {run.planned or run.records} cells, "
                     f"wall {fmt_duration(run.wall_s)}, lab {md_escape(run.lab_version or '?')}, "
                     f"matrix {md_escape(run.matrix or run.matrix_path or '?')}, "
                     f"{md_escape(host.get('cores', '?'))} cores, load {md_escape(host.get('load1', '?'))}")
    used = [v for v in VERDICT_ORDER if report.counts.get(v)]
    lines += ["", "| scenario | cells | " + " | ".join(
        f"{VERDICT_STYLE[v].emoji} {VERDICT_STYLE[v].label}" for v in used) + " |",
        "|---|---:|" + "---:|" * len(used)]
    for row in summary_rows(e.record for e in report.entries):
        counts = dict(zip(VERDICT_ORDER, row[2:]))
        lines.append(f"| {md_escape(row[0])} | {row[1]} | " + " | ".join(str(counts[v]) for v in used) + " |")
    errors = [e for e in report.entries if e.verdict is Verdict.ERROR]
    if errors:
        lines += ["", f"### {VERDICT_STYLE[Verdict.ERROR].emoji} Lab errors ({len(errors)}): the lab failed, "
                  "these say nothing about Celery", ""]
        lines += _bullets([f"- {md_code(e.record.cell_id)}: {md_escape(e.record.outcome.summary)}"
                           for e in errors])
    findings = [e for e in report.entries if e.verdict.is_finding and e.verdict is not Verdict.PASS]
    if findings:
        lines += ["", f"### Findings ({len(findings)})", ""]
        lines += _bullets([
            f"- {VERDICT_STYLE[e.verdict].emoji} **{e.verdict.value}** {md_code(e.record.cell_id)}: "
            f"{md_escape(e.record.outcome.summary)}"
            + (f" (signature {md_code(e.record.outcome.signature)})" if e.record.outcome.signature else "")
            for e in findings])
    if diff is not None:
        lines += ["", f"### Changes vs baseline {md_code(diff.baseline)}", ""]
        if diff.empty:
            lines.append(f"No verdict changed ({diff.unchanged} cells compared).")
        lines += _bullets([
            f"- {md_code(c.cell_id)}: {c.before_verdict.value} → **{c.after_verdict.value}** ({c.kind})"
            for c in diff.changed])
        lines += _bullets([f"- {md_code(c.cell_id)}: new, {c.after_verdict.value}" for c in diff.added])
        lines += _bullets([f"- {md_code(c.cell_id)}: only in baseline ({c.before_verdict.value})"
                           for c in diff.removed])
    return "\n".join(lines) + "\n"


def results_json(report: Report, diff: Diff | None = None) -> dict[str, Any]:
    def change(c) -> dict[str, Any]:
        return {"cell_id": c.cell_id, "scenario": c.scenario, "kind": c.kind,
                "before": c.before_verdict.value if c.before else None,
                "after": c.after_verdict.value if c.after else None}

    return {
        "schema": 1,
        "generated_at": time.time(),
        "runs": [{"run_id": r.run_id, "run_dir": str(r.run_dir), "started_at": r.started_at,
                  "wall_s": r.wall_s, "host": r.host, "lab_version": r.lab_version, "matrix": r.matrix,
                  "matrix_path": r.matrix_path, "records": r.records, "planned": r.planned}
                 for r in report.runs],
        "counts": {v.value: n for v, n in report.counts.items()},
        "summary": [dict(zip(SUMMARY_HEADER, row)) for row in summary_rows(e.record for e in report.entries)],
        "records": [dict(e.record.to_dict(), page=e.page, key_figure=e.key_figure) for e in report.entries],
        "diff": None if diff is None else {
            "baseline": diff.baseline, "unchanged": diff.unchanged,
            "changed": [change(c) for c in diff.changed], "added": [change(c) for c in diff.added],
            "removed": [change(c) for c in diff.removed]},
    }
