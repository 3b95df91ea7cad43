"""Unit tests for lab.report: pages, escaping, JUnit semantics, summary.md, diff."""

from __future__ import annotations

import html.parser
import importlib.util
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import pytest

from lab.report import SIGNATURES, SUMMARY_HEADER, build_report, summary_rows
from lab.report.diff import compare
from lab.report.signatures import highlight
from lab.report.timeline import layout
from lab.results import RESULTS_FILE, read_records
from lab.verdict import Verdict

_spec = importlib.util.spec_from_file_location(
    "lab_report_sample_records", Path(__file__).resolve().parents[1] / "fixtures" / "sample_records.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)

XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class Links(html.parser.HTMLParser):
    """Collects <a> attributes, <script> count and the text of <h1>/<title>."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str]] = []
        self.scripts = 0
        self.h1 = ""
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "a":
            self.anchors.append(attrs)
        if tag == "script":
            self.scripts += 1
        if tag in ("h1", "title"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "h1":
            self.h1 += data
        elif self._in == "title":
            self.title += data


def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    records = samples.write_run(root / "current", "current")
    samples.write_run(root / "baseline", "baseline")
    index = build_report([root / "current"], root / "html", baseline=root / "baseline")
    return root, records, index


def cells_in(index: Path) -> dict[str, str]:
    return {a["data-cell-id"]: a["href"] for a in parse(index).anchors if "cell" in a.get("class", "").split()}


def test_every_record_has_an_overview_cell_and_a_cell_page(built):
    root, records, index = built
    assert index == root / "html" / "index.html"
    cells = cells_in(index)
    assert set(cells) == {r.cell_id for r in records}
    for record in records:
        page = index.parent / cells[record.cell_id]
        assert page.is_file()
        parsed = parse(page)
        assert parsed.h1.strip() == record.cell_id
        assert record.cell_id in parsed.title
        text = page.read_text()
        assert record.rerun in text
        assert record.outcome.verdict.value in text or "lab error" in text


def test_planned_cell_without_record_is_shown_as_not_run(built):
    text = built[2].read_text()
    assert text.count("not run</span>") == 1


def test_error_cells_look_different_from_every_finding(built):
    root, records, index = built
    classes = {a["data-cell-id"]: a["class"] for a in parse(index).anchors if "data-cell-id" in a}
    error_ids = {r.cell_id for r in records if r.outcome.verdict is Verdict.ERROR}
    assert error_ids
    for cell_id, css in classes.items():
        assert ("v-error" in css.split()) == (cell_id in error_ids)
    assert "lab error" in index.read_text()
    assert "repeating-linear-gradient" in index.read_text()  # hatched


def test_script_in_evidence_logs_and_summary_is_escaped(built):
    root, records, index = built
    out = root / "html"
    pages = list(out.rglob("*.html"))
    assert len(pages) >= len(records) + 3
    for page in pages:
        text = page.read_text()
        assert "<script>alert" not in text, page
        assert "<img src=x" not in text, page
        assert "<b>fast</b>" not in text, page
        assert "<sig>" not in text, page
        assert parse(page).scripts <= 1, page  # only the report's own filter script
    xss_id = next(r.cell_id for r in records if r.outcome.signature == "weird<sig>")
    cell_page = out / cells_in(index)[xss_id]
    text = cell_page.read_text()
    assert XSS_ESCAPED in text
    assert "&lt;img src=x onerror=" in text
    assert "&lt;i&gt;odd name&lt;/i&gt;" in text
    assert parse(cell_page).scripts == 0
    assert "&lt;b&gt;fast&lt;/b&gt;" in index.read_text()


def test_signature_is_highlighted_with_safe_markup(built):
    root, records, index = built
    bug = next(r for r in records if r.outcome.signature == samples.SIGNATURE)
    text = (index.parent / cells_in(index)[bug.cell_id]).read_text()
    assert "<mark class=\"sig\">AttributeError: &#39;ForkProcess&#39; object has no attribute &#39;_sentinel_poll&#39;</mark>" in text
    marked = highlight("<b>boom</b> AttributeError <script>", ["boom"], r"AttributeError")
    assert str(marked) == ("&lt;b&gt;<mark class=\"sig\">boom</mark>&lt;/b&gt; "
                           "<mark class=\"sig\">AttributeError</mark> &lt;script&gt;")
    assert "sentinel-poll-attributeerror" in SIGNATURES
    assert SIGNATURES["sentinel-poll-attributeerror"]["issue_url"].startswith("https://github.com/celery/celery/issues")


def test_log_links_resolve_to_the_run_dir(built):
    root, records, index = built
    page = index.parent / cells_in(index)[records[0].cell_id]
    hrefs = [a["href"] for a in parse(page).anchors if a["href"].endswith(".log")]
    assert len(hrefs) == 2
    for href in hrefs:
        assert (page.parent / unquote(href)).resolve().is_file()


def test_cell_page_timeline_draws_tasks_faults_and_lifecycle(built):
    root, records, index = built
    record = records[0]
    text = (index.parent / cells_in(index)[record.cell_id]).read_text()
    assert '<svg class="timeline"' in text
    assert "SIGTERM→master" in text
    assert text.count('class="bar"') == 3
    for label in (">start<", ">ready<", ">exit<", ">child up<"):
        assert label in text
    tl = layout(record.journal, record.faults)
    assert [lane.label for lane in tl.lanes] == ["master 4100", "child 4101", "child 4102"]
    assert all(0 <= b.x <= tl.width and b.w > 0 for b in tl.bars)
    assert layout([], []).empty
    unfinished = next(r for r in records if r.outcome.verdict is Verdict.LOST)
    assert any("bar-open" in b.css for b in layout(unfinished.journal, unfinished.faults).bars)


def test_scenario_page_shows_description_flips_and_signature_versions(built):
    root, records, index = built
    text = (index.parent / "scenario-lifecycle-smoke.html").read_text()
    assert "Start a worker, wait until ready" in text
    assert 'class="flip"' in text
    assert "was pass in 5.5.3" in text
    assert "sentinel-poll-attributeerror" in text
    sigs = (index.parent / "signatures.html").read_text()
    assert 'id="sig-sentinel-poll-attributeerror"' in sigs
    assert "<b>5.6.0</b>" in sigs


def test_junit_error_is_error_and_findings_are_properties(built, tmp_path):
    root, records, index = built
    tree = ET.parse(index.parent / "junit.xml")
    cases = {c.get("name"): c for c in tree.iter("testcase")}
    assert set(cases) == {r.cell_id for r in records}
    for r in records:
        case = cases[r.cell_id]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["verdict"] == r.outcome.verdict.value
        assert case.find("failure") is None
        assert (case.find("error") is not None) == (r.outcome.verdict is Verdict.ERROR)
        assert (case.find("skipped") is not None) == (r.outcome.verdict is Verdict.NA)
    error = next(c for c in cases.values() if c.find("error") is not None)
    assert error.find("error").get("type") == "lab-error"
    suites = tree.getroot()
    assert (suites.get("errors"), suites.get("failures"), suites.get("tests")) == ("1", "0", str(len(records)))

    strict = ET.parse(build_report([root / "current"], tmp_path / "strict", strict=True).parent / "junit.xml")
    for case in strict.iter("testcase"):
        verdict = Verdict(next(p.get("value") for p in case.iter("property") if p.get("name") == "verdict"))
        expect_failure = verdict.is_finding and verdict is not Verdict.PASS
        assert (case.find("failure") is not None) == expect_failure, case.get("name")
        assert (case.find("error") is not None) == (verdict is Verdict.ERROR)
    assert strict.getroot().get("failures") == "4"


def test_summary_md(built):
    root, records, index = built
    text = (index.parent / "summary.md").read_text()
    assert text.startswith("## Celery lifecycle lab: `20240102-120000-curr01`")
    # what changed comes first, against a named baseline (run id and date)
    changes = text.index("### What changed since `20240101-120000-base01` (")
    assert changes < text.index("| scenario | cells |") < text.index("### Findings")
    assert "**3 worse, 0 better, 1 other changes, 1 new, 1 gone**" in text
    assert "pass → **bug**" in text and "Gone (only in the baseline)" in text
    assert "| lifecycle-smoke | 9 | 3 | 1 | 1 | 1 | 1 | 1 | 1 |" in text
    assert "Lab errors (1)" in text and "say nothing about Celery" in text
    assert "### Findings (4, every one)" in text
    assert "2 cores, load 0.5" in text and "9 of 10 cells" in text
    assert "<img" not in text and "&lt;img" in text


def test_summary_md_lists_every_finding_grouped(tmp_path):
    from lab.results import append_record

    base = samples.make_records()[0]
    (tmp_path / "run").mkdir()
    for i in range(60):
        record = samples.make_records()[0]
        record.cell_id = f"{base.cell_id}-{i}"
        record.cell = dict(base.cell, celery=f"5.{i}.0")
        record.outcome.verdict, record.outcome.signature = Verdict.STALL, "visibility-timeout-stall"
        append_record(tmp_path / "run", record)
    build_report([tmp_path / "run"], tmp_path / "out")
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "### Findings (60, every one)" in text
    assert text.count("visibility-timeout-stall") == 1   # grouped, not 60 lines
    assert all(f"5.{i}.0/" in text for i in range(60))
    assert "more (see the HTML report)" not in text


def test_diff_lists_changed_verdicts(built):
    root, records, index = built
    baseline = list(read_records([root / "baseline"]))
    diff = compare(records, baseline, "baseline")
    changed = {c.cell_id: (c.before_verdict.value, c.after_verdict.value) for c in diff.changed}
    bug = next(r.cell_id for r in records if r.outcome.verdict is Verdict.BUG)
    err = next(r.cell_id for r in records if r.outcome.verdict is Verdict.ERROR)
    assert changed[bug] == ("pass", "bug")
    assert changed[err] == ("pass", "error")
    assert len(changed) == 4 and diff.unchanged == 4
    assert [c.kind for c in diff.added] == ["new"] and [c.kind for c in diff.removed] == ["gone"]
    page = (index.parent / "diff.html").read_text()
    for cell_id in changed:
        assert cell_id in page
    data = json.loads((index.parent / "results.json").read_text())
    assert len(data["diff"]["changed"]) == 4
    assert {r["cell_id"] for r in data["records"]} == {r.cell_id for r in records}


def test_no_baseline_no_diff_page(tmp_path):
    samples.write_run(tmp_path / "run")
    index = build_report([tmp_path / "run"], tmp_path / "out")
    assert not (tmp_path / "out" / "diff.html").exists()
    assert "diff.html" not in index.read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["diff"] is None


def test_torn_last_line_is_skipped(tmp_path, capsys):
    records = samples.write_run(tmp_path / "run")
    with open(tmp_path / "run" / RESULTS_FILE, "a") as handle:
        handle.write('{"run_id": "20240102-120000-curr01", "cell_id": "lifecycle-smo')
    index = build_report([tmp_path / "run"], tmp_path / "out")
    assert set(cells_in(index)) == {r.cell_id for r in records}
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(data["records"]) == len(records)
    assert "unreadable record skipped" in capsys.readouterr().out


def test_summary_rows_counts_per_scenario(built):
    root, records, index = built
    rows = summary_rows(records)
    assert SUMMARY_HEADER[:3] == ("scenario", "cells", "pass") and SUMMARY_HEADER[-1] == "error"
    assert len(rows) == 1
    row = dict(zip(SUMMARY_HEADER, rows[0]))
    assert row == {"scenario": "lifecycle-smoke", "cells": 9, "pass": 3, "bug": 1, "lost": 1, "duplicate": 0,
                   "hang": 0, "silent-exit": 0, "incomplete": 0, "stall": 1, "failed-fast": 1, "n/a": 1,
                   "setup-failed": 0, "error": 1}
    other = samples.make_records()[0]
    other.cell = dict(other.cell, scenario="another")
    rows = summary_rows(records + [other])
    assert [r[0] for r in rows] == ["another", "lifecycle-smoke", "all"]
    assert rows[-1][1] == 10


def test_several_runs_same_cells_unknown_scenario_and_empty_run(tmp_path):
    a = samples.write_run(tmp_path / "a")
    b = samples.write_run(tmp_path / "b")
    odd = samples.make_records()[0]
    odd.cell = dict(odd.cell, scenario="not-in-catalog")
    odd.cell_id = "not-in-catalog--x"
    from lab.results import append_record
    append_record(tmp_path / "b", odd)
    (tmp_path / "empty").mkdir()
    index = build_report([tmp_path / "a", tmp_path / "b", tmp_path / "empty"], tmp_path / "out")
    anchors = [x for x in parse(index).anchors if "data-cell-id" in x]
    assert len(anchors) == len(a) + len(b) + 1
    hrefs = {x["href"] for x in anchors}
    assert len(hrefs) == len(anchors)
    assert all((index.parent / h).is_file() for h in hrefs)
    assert (index.parent / "scenario-not-in-catalog.html").is_file()
    empty = build_report([tmp_path / "empty"], tmp_path / "out-empty")
    assert "No result records were found." in empty.read_text()
    assert os.path.getsize(tmp_path / "out-empty" / "junit.xml") > 0


def test_odd_records_still_render(tmp_path):
    from lab.results import append_record

    record = samples.make_records()[0]
    record.outcome.metrics = {"rates": [{"verdict": "from-the-future", "k": 1}, "junk"], "nested": {"a": [1, 2]}}
    record.outcome.also = ["from-the-future"]
    record.outcome.evidence = {"json": {"x": "<script>"}}
    record.journal = [{"event": "worker_init", "pid": 1}, {"event": "exec_start", "pid": 1, "task_id": "t", "mono": 3.0}]
    record.faults = [{"kind": "kill", "signal": "SIGKILL", "target": "child", "pid": 2, "mono": 2.5}]
    (tmp_path / "run").mkdir()
    append_record(tmp_path / "run", record)
    index = build_report([tmp_path / "run"], tmp_path / "out")
    page = (index.parent / cells_in(index)[record.cell_id]).read_text()
    assert "unknown" in page and "SIGKILL→child" in page and "&lt;script&gt;" in page
    assert "bar-open" in page
