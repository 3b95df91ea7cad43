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

from lab.signatures import describe

from lab.report.diff import Diff
from lab.report.model import Report
from lab.report.portable import portable_command, portable_value
from lab.report.style import VERDICT_ORDER, VERDICT_STYLE, is_finding, is_lab_failure, severity, style

SUMMARY_HEADER = ("scenario", "cells", *(v.value for v in VERDICT_ORDER))
_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


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


JUNIT_MODES = ("plain", "findings", "regressions")


def junit_xml(report: Report, strict: bool = False, mode: str = "plain", diff: Diff | None = None) -> str:
    """One <testcase> per record. Lab failures are <error>s, n/a <skipped>; in mode "findings"
    (or strict) every non-pass finding is a <failure>, in mode "regressions" every cell worse
    than the baseline (or new and not pass) is one."""
    mode = "findings" if strict else mode
    worse = {c.cell_id: c for c in (diff.worse if diff else [])}
    worse.update({c.cell_id: c for c in (diff.added if diff else [])
                  if c.after and is_finding(c.after_verdict) and c.after_verdict is not Verdict.PASS})
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
                                ("rerun", portable_command(record.rerun))):
                if value:
                    ET.SubElement(props, "property", name=name, value=_xml_text(value))
            message = _xml_text(f"{outcome.verdict.value}: {outcome.summary}")
            failing = [f for f in entry.findings if is_finding(f["verdict"]) and f["verdict"] != "pass"]
            if is_lab_failure(outcome.verdict):
                node = ET.SubElement(case, "error", message=message,
                                     type="lab-error" if outcome.verdict.value == "error" else outcome.verdict.value)
                node.text = _xml_text("\n\n".join(
                    [outcome.summary] + [f"{k}:\n{v}" for k, v in outcome.evidence.items()]))
                counts["errors"] += 1
            elif outcome.verdict.value == "n/a":
                ET.SubElement(case, "skipped", message=message)
                counts["skipped"] += 1
            elif mode == "findings" and failing:
                node = ET.SubElement(case, "failure", message=message, type=outcome.verdict.value)
                node.text = _xml_text("\n".join(
                    f"{f['verdict']}: {f['summary']}" + (f" (signature {f['signature']})" if f["signature"] else "")
                    for f in failing))
                counts["failures"] += 1
            elif mode == "regressions" and record.cell_id in worse:
                change = worse[record.cell_id]
                node = ET.SubElement(case, "failure", type="regression", message=_xml_text(
                    f"{change.text}, now {outcome.verdict.value} (baseline {diff.baseline})"))
                node.text = _xml_text(outcome.summary)
                counts["failures"] += 1
            if record.rerun:
                ET.SubElement(case, "system-out").text = _xml_text(f"rerun: {portable_command(record.rerun)}")
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


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch)) if epoch else "date unknown"


def _changes_md(diff: Diff) -> list[str]:
    lines = [f"### What changed since {md_code(diff.baseline)} ({_when(diff.date)})", "",
             f"**{len(diff.worse)} worse, {len(diff.better)} better, {len(diff.other)} other changes, "
             f"{len(diff.added)} new, {len(diff.removed)} gone**; {diff.unchanged} cells unchanged.", ""]
    for title, changes in (("Worse", diff.worse), ("Better", diff.better), ("Other changes", diff.other)):
        if changes:
            lines.append(f"- {title}: " + "; ".join(
                f"{md_code(c.cell_id)} {c.before_verdict.value} → **{c.after_verdict.value}**" for c in changes))
    if diff.added:
        lines.append("- New: " + "; ".join(f"{md_code(c.cell_id)} {c.after_verdict.value}" for c in diff.added))
    if diff.removed:
        lines.append("- Gone (only in the baseline): " + "; ".join(
            f"{md_code(c.cell_id)} ({c.before_verdict.value})" for c in diff.removed))
    return lines


def _short_cell(entry) -> str:
    parts = [entry.axis("celery"), entry.axis("pool"), entry.axis("broker")]
    if entry.axis("backend") not in ("", "auto", entry.axis("broker")):
        parts.append("be-" + entry.axis("backend"))
    parts += [p for p in (entry.axis("profile"), entry.axis("mode")) if p not in ("", "defaults", "default")]
    return "/".join(parts)


def findings_md(report: Report) -> list[str]:
    """Every non-pass finding, grouped by scenario, verdict and signature (no cap)."""
    groups: dict[tuple[str, str, str], list] = {}
    for entry in report.entries:
        for finding in entry.findings:
            if is_finding(finding["verdict"]) and finding["verdict"] != "pass":
                key = (entry.axis("scenario"), finding["verdict"], finding["signature"] or "")
                groups.setdefault(key, []).append((entry, finding))
    total = sum(len(v) for v in groups.values())
    lines = [f"### Findings ({total}, every one)", ""]
    for (scenario, verdict, signature), items in sorted(groups.items(), key=lambda kv: (kv[0][0], severity(kv[0][1]))):
        s = style(verdict)
        head = f"- {s.emoji} **{md_escape(s.label)}** {md_escape(scenario)}"
        if signature:
            head += f" {md_code(signature)} ({md_escape(describe(signature).get('title', ''))})"
        example = md_escape(items[0][1]["summary"])[:200]
        lines.append(f"{head} × {len(items)}: " + ", ".join(md_code(_short_cell(e)) for e, _ in items)
                     + (f" — e.g. {example}" if example else ""))
    return lines if total else []


def summary_md(report: Report, diff: Diff | None = None) -> str:
    runs = ", ".join(f"{md_code(r.run_id)}" for r in report.runs) or "(no run)"
    lines = [f"## Celery lifecycle lab: {runs}", ""]
    if diff is not None:
        lines += _changes_md(diff) + ([""] if lines and _changes_md(diff)[-1] != "" else [])
    else:
        lines += ["No baseline was given: nothing to compare (`lab report --baseline previous|DIR`).", ""]
    for run in report.runs:
        host = run.host
        lines.append(f"- run {md_code(run.run_id)} ({_when(run.started_at)}): {run.records} of "
                     f"{run.planned or run.records} cells, "
                     f"wall {fmt_duration(run.wall_s)}, lab {md_escape(run.lab_version or '?')}, "
                     f"matrix {md_escape(run.matrix or portable_command(run.matrix_path) or '?')}, "
                     f"{md_escape(host.get('cores', '?'))} cores, load {md_escape(host.get('load1', '?'))}")
    used = [v for v in VERDICT_ORDER if report.counts.get(v)]
    lines += ["", "| scenario | cells | " + " | ".join(
        f"{VERDICT_STYLE[v].emoji} {VERDICT_STYLE[v].label}" for v in used) + " |",
        "|---|---:|" + "---:|" * len(used)]
    for row in summary_rows(e.record for e in report.entries):
        counts = dict(zip(VERDICT_ORDER, row[2:]))
        lines.append(f"| {md_escape(row[0])} | {row[1]} | " + " | ".join(str(counts[v]) for v in used) + " |")
    errors = [e for e in report.entries if is_lab_failure(e.verdict)]
    if errors:
        lines += ["", f"### {VERDICT_STYLE[Verdict.ERROR].emoji} Lab errors ({len(errors)}): the lab failed, "
                  "these say nothing about Celery", ""]
        lines += [f"- {md_code(e.record.cell_id)}: {md_escape(e.record.outcome.summary)}" for e in errors]
    found = findings_md(report)
    if found:
        lines += [""] + found
    return "\n".join(lines) + "\n"


def results_json(report: Report, diff: Diff | None = None) -> dict[str, Any]:
    def change(c) -> dict[str, Any]:
        return {"cell_id": c.cell_id, "scenario": c.scenario, "kind": c.kind,
                "before": c.before_verdict.value if c.before else None, "kind_text": c.text,
                "after": c.after_verdict.value if c.after else None}

    return {
        "schema": 1,
        "generated_at": time.time(),
        "runs": [{"run_id": r.run_id, "run_dir": r.run_dir.name, "started_at": r.started_at,
                  "wall_s": r.wall_s, "host": r.host, "lab_version": r.lab_version, "matrix": r.matrix,
                  "matrix_path": r.matrix_path, "records": r.records, "planned": r.planned}
                 for r in report.runs],
        "counts": {v.value: n for v, n in report.counts.items()},
        "summary": [dict(zip(SUMMARY_HEADER, row)) for row in summary_rows(e.record for e in report.entries)],
        "records": [dict(portable_value(e.record.to_dict()), page=e.page, key_figure=e.key_figure)
                    for e in report.entries],
        "diff": None if diff is None else {
            "baseline": diff.baseline, "baseline_started_at": diff.date, "unchanged": diff.unchanged,
            "worse": len(diff.worse), "better": len(diff.better), "new": len(diff.added), "gone": len(diff.removed),
            "changed": [change(c) for c in diff.changed], "added": [change(c) for c in diff.added],
            "removed": [change(c) for c in diff.removed]},
    }
