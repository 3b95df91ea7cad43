"""Open a report built from sample records in headless Chromium and check it.

Checks: no console errors, a cell for every record, the verdict filter, a
cell link opening its page, escaped evidence, the other pages. Screenshots go
to test-artifacts/ (report-overview.png, report-cell.png).
"""

from __future__ import annotations

import importlib.util

import pytest

from chromium import ARTIFACTS, REPO, screenshot
from lab.report import build_report
from lab.verdict import Verdict

pytestmark = pytest.mark.e2e

_spec = importlib.util.spec_from_file_location(
    "lab_report_sample_records_e2e", REPO / "tests" / "fixtures" / "sample_records.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)


def test_report_opens_in_chromium(browser, tmp_path):
    records = samples.write_run(tmp_path / "current", "current")
    samples.write_run(tmp_path / "baseline", "baseline")
    index = build_report([tmp_path / "current"], tmp_path / "html", baseline=tmp_path / "baseline")
    cdp = browser

    cdp.navigate(index.as_uri())
    assert cdp.js("document.title") == "Celery lifecycle lab: overview"
    cells = cdp.js("Array.from(document.querySelectorAll('a.cell')).map(a => "
                   "[a.dataset.cellId, a.getAttribute('href'), a.getBoundingClientRect().width > 0])")
    assert sorted(c[0] for c in cells) == sorted(r.cell_id for r in records)
    assert all(visible for _, _, visible in cells)
    assert cdp.js("document.querySelectorAll('script').length") == 1
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot(cdp, ARTIFACTS / "report-overview.png")
    assert (ARTIFACTS / "report-overview.png").stat().st_size > 10_000

    passes = sum(r.outcome.verdict is Verdict.PASS for r in records)
    cdp.js("document.querySelector('input.vfilter[value=\"pass\"]').click()")
    assert cdp.js("document.querySelectorAll('a.cell.hidden').length") == passes
    cdp.js("document.querySelector('input.vfilter[value=\"pass\"]').click()")
    assert cdp.js("document.querySelectorAll('a.cell.hidden').length") == 0

    bug = next(r for r in records if r.outcome.verdict is Verdict.BUG)
    mark = len(cdp.events)
    cdp.js(f"document.querySelector('a.cell[data-cell-id=\"{bug.cell_id}\"]').click()")
    cdp.wait_for("Page.loadEventFired", after=mark)
    assert cdp.js("location.pathname").endswith(f"/cells/{bug.cell_id}.html")
    assert cdp.js("document.querySelector('h1').textContent.trim()") == bug.cell_id
    assert cdp.js("document.title").startswith(bug.cell_id)
    assert cdp.js("document.querySelectorAll('svg.timeline rect.bar').length") == 3
    assert cdp.js("document.querySelectorAll('mark.sig').length") >= 1
    screenshot(cdp, ARTIFACTS / "report-cell.png")

    xss = next(r for r in records if r.outcome.signature == "weird<sig>")
    cdp.navigate((index.parent / "cells" / f"{xss.cell_id}.html").as_uri())
    assert cdp.js("document.querySelectorAll('script').length") == 0
    evidence = cdp.js("Array.from(document.querySelectorAll('pre.evidence')).map(p => p.textContent).join('\\n')")
    assert "<script>alert(1)</script>" in evidence

    for page in ("scenario-lifecycle-smoke.html", "signatures.html", "diff.html"):
        cdp.navigate((index.parent / page).as_uri())
        assert cdp.js("document.querySelector('h1').textContent.trim()")

    assert cdp.problems() == []
