"""Open a report built from sample records in headless Chromium and check it.

Checks: no console errors, a cell for every record, the verdict filter (it
hides chips and empty tables), a cell link opening its page, escaped
evidence, the other pages. Driven by Playwright on Debian's /usr/bin/chromium
(the `pw_page` fixture). Screenshots go to test-artifacts/ (report-overview.png,
report-cell.png).
"""

from __future__ import annotations

import importlib.util

import pytest

from chromium import ARTIFACTS, REPO
from lab.report import build_report
from lab.verdict import Verdict

pytestmark = pytest.mark.e2e

_spec = importlib.util.spec_from_file_location(
    "lab_report_sample_records_e2e", REPO / "tests" / "fixtures" / "sample_records.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)


def test_report_opens_in_chromium(pw_page, tmp_path):
    page, problems = pw_page
    records = samples.write_run(tmp_path / "current", "current")
    samples.write_run(tmp_path / "baseline", "baseline")
    index = build_report([tmp_path / "current"], tmp_path / "html", baseline=tmp_path / "baseline")

    page.goto(index.as_uri())
    assert page.title() == "Celery lifecycle lab: overview"
    ids = page.evaluate("Array.from(document.querySelectorAll('a.cell')).map(a => a.dataset.cellId)")
    assert sorted(ids) == sorted(r.cell_id for r in records)
    assert page.locator("script").count() == 1
    page.locator("details.scenario-matrix > summary").first.click()   # open the matrix
    assert page.locator("a.cell").first.is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-overview.png"), full_page=True)
    assert (ARTIFACTS / "report-overview.png").stat().st_size > 10_000

    passes = sum(r.outcome.verdict is Verdict.PASS for r in records)
    page.locator('input.vfilter[value="pass"]').click()
    assert page.locator("a.cell.hidden").count() == passes
    assert "hide=pass" in page.url
    page.locator('input.vfilter[value="pass"]').click()
    assert page.locator("a.cell.hidden").count() == 0

    bug = next(r for r in records if r.outcome.verdict is Verdict.BUG)
    page.locator(f'a.cell[data-cell-id="{bug.cell_id}"]').click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/cells/{bug.cell_id}.html")
    assert page.locator("h1").text_content().strip() == bug.cell_id
    assert page.title().startswith(bug.cell_id)
    assert page.locator("svg.timeline rect.bar").count() == 3
    assert page.locator("mark.sig").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "report-cell.png"), full_page=True)

    xss = next(r for r in records if r.outcome.signature == "weird<sig>")
    page.goto((index.parent / "cells" / f"{xss.cell_id}.html").as_uri())
    assert page.locator("script").count() == 0
    evidence = page.evaluate("Array.from(document.querySelectorAll('pre.evidence')).map(p => p.textContent).join('\\n')")
    assert "<script>alert(1)</script>" in evidence

    for name in ("scenario-lifecycle-smoke.html", "signatures.html", "diff.html"):
        page.goto((index.parent / name).as_uri())
        assert page.locator("h1").text_content().strip()
    assert problems == []
