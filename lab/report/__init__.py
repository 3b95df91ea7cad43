"""HTML compatibility reports (and CI outputs) from lab result records.

Public API:
- `build_report(run_dirs, out_dir, baseline=None, strict=False) -> Path`:
  reads only results.jsonl (+ plan.json when present) of each run dir, never
  reruns anything, and writes into out_dir: index.html (overview), one page
  per scenario (with its answer-first view) and per record (cells/), one per
  signature (signatures/), signatures.html, diff.html (only with a baseline
  run dir), a repro bundle per cell (repro/<slug>/), results.json, junit.xml
  and summary.md. Returns the path of index.html.
- `summary_rows(records) -> list[tuple]` and `SUMMARY_HEADER`: verdict counts
  per scenario for the CLI's table.
- `SIGNATURES`: known signature metadata {name: {"title", "issue_url",
  "fixed_in", "pattern"}}; `build_report(signatures=...)` adds to it per call.

Module map: loader (run dirs -> model), model (tables, entries), timeline (journal -> SVG geometry),
diff (vs baseline), outputs (json/junit/markdown), render (Jinja2, autoescape
on), style (verdict colours), signatures (metadata, safe highlighting).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lab.report import diff as _diff
from lab.report import loader as _loader
from lab.report.outputs import SUMMARY_HEADER, junit_xml, results_json, summary_md, summary_rows
from lab.report.render import write_pages
from lab.report.signatures import SIGNATURES
from lab.results import write_json

__all__ = ["build_report", "summary_rows", "SUMMARY_HEADER", "SIGNATURES"]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(run_dirs: list[Path], out_dir: Path, baseline: Path | None = None,
                 strict: bool = False, signatures: dict[str, dict[str, Any]] | None = None,
                 junit: str = "plain", answer_versions: list[str] | None = None) -> Path:
    """Build the static report for `run_dirs` into `out_dir`; return index.html's path.

    `junit` is the junit.xml mode ("plain", "findings": every non-pass finding is a
    <failure>, "regressions": every cell worse than the baseline is); `strict` means
    "findings". `answer_versions` picks the Celery versions of the answer view
    (default: newest and production).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _loader.load([Path(p) for p in run_dirs])
    diff = None
    if baseline is not None:
        before = _diff.load_baseline(Path(baseline))
        run_id, date = _diff.baseline_info(Path(baseline), before)
        diff = _diff.compare([e.record for e in report.entries], before, label=run_id, date=date)
    index = write_pages(report, out_dir, diff, signatures, answer_versions)
    write_json(out_dir / "results.json", results_json(report, diff))
    _write_text(out_dir / "junit.xml", junit_xml(report, strict=strict, mode=junit, diff=diff))
    _write_text(out_dir / "summary.md", summary_md(report, diff))
    return index
