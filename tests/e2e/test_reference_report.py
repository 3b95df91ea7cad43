"""Build the report of the committed reference run and read it as its three users would.

Checks: 0 dead links and no external URL (anchors to upstream trackers aside), no
absolute path of the machine that ran the cells in a rerun command; the answer
view, the change banner and the repro bundles exist; then in Chromium (Playwright
driving /usr/bin/chromium): the overview opens short and with no console error or
network request, the filter hides empty tables and keeps its state in the URL,
chips have accessible names, the skip link and the output links are there, the
eviction answer view names task_acks_late, a redelivered task is drawn on the
replacement's process. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from chromium import ARTIFACTS, REPO
from lab.report import build_report

sys.path.insert(0, str(REPO / "tests"))
from linkcheck import check  # noqa: E402

pytestmark = pytest.mark.e2e
REFERENCE = REPO / "reports" / "reference"
MEASURE = "eviction--celery-5.6.2--prefork--redis--be-redis--acks-late--measure-stall"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not (REFERENCE / "results.jsonl").exists():
        pytest.skip("no committed reference run")
    root = tmp_path_factory.mktemp("reference")
    run = root / "run"
    run.mkdir()
    for name in ("results.jsonl", "plan.json"):
        shutil.copy(REFERENCE / name, run / name)
    baseline = root / "baseline"   # the reference with one cell better, so something changed
    baseline.mkdir()
    lines = (REFERENCE / "results.jsonl").read_text().splitlines()
    changed = None
    for i, line in enumerate(lines):
        record = json.loads(line)
        if changed is None and record["outcome"]["verdict"] == "lost":
            record["outcome"]["verdict"], record["outcome"]["signature"] = "pass", None
            changed, lines[i] = record["cell_id"], json.dumps(record)
    (baseline / "results.jsonl").write_text("\n".join(lines) + "\n")
    index = build_report([run], root / "html", baseline=baseline)
    return index, changed


def test_reference_report_is_self_contained(built):
    index, _ = built
    dead, external = check(index.parent)
    assert dead == [], dead[:5]
    assert external == [], external[:5]
    for page in list(index.parent.rglob("*.html")) + [index.parent / "junit.xml", index.parent / "summary.md"]:
        text = page.read_text()
        assert "--matrix /work/" not in text and "--matrix /home/" not in text, page


def test_answer_view_change_banner_and_repro_bundle_exist(built):
    index, changed = built
    out = index.parent
    overview = index.read_text()
    assert 'id="what-changed"' in overview and "1 worse" in overview
    assert 'id="what-to-use"' in overview and 'id="top-findings"' in overview
    eviction = (out / "scenario-eviction.html").read_text()
    assert 'id="answer"' in eviction and "task_acks_late=True" in eviction
    assert "application pattern, not a Celery setting" in eviction
    assert "stands for Redis transport default 3600 s (1 h)" in eviction
    bundle = out / "repro" / MEASURE
    for name in ("README.md", "app.py", "worker.sh", "trigger.py", "rate.sh"):
        assert (bundle / name).is_file(), name
    assert "lab triage eviction --celery 5.6.2" in (bundle / "rate.sh").read_text()
    assert "'task_acks_late': True" in (bundle / "app.py").read_text() or '"task_acks_late": True' in (
        bundle / "app.py").read_text()
    compile((bundle / "app.py").read_text(), "app.py", "exec")
    compile((bundle / "trigger.py").read_text(), "trigger.py", "exec")
    summary = (out / "summary.md").read_text()
    assert summary.index("What changed since") < summary.index("### Findings (")
    assert "more (see the HTML report)" not in summary


def test_reference_report_in_chromium(built, pw_page):
    index, changed = built
    page, problems = pw_page
    page.goto(index.as_uri())
    assert page.title() == "Celery lifecycle lab: overview"
    assert page.evaluate("document.documentElement.scrollHeight") < 4000
    assert page.locator("a.skip").count() == 1
    assert page.locator("header a[href='results.json']").count() == 1
    assert page.locator("header a[href='junit.xml']").count() == 1
    chip = page.locator("a.cell").first
    assert ":" in (chip.get_attribute("aria-label") or "")
    assert page.locator(f"a.cell.changed[data-cell-id='{changed}']").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reference-overview.png"), full_page=True)

    page.fill("#cellfilter", "sentinel-poll")
    visible_tables = page.evaluate("Array.from(document.querySelectorAll('table.matrix'))"
                                   ".filter(t => t.offsetParent !== null).length")
    assert visible_tables == 1   # only the shutdown-race section holding the signature
    assert "q=sentinel-poll" in page.url
    page.reload()
    assert page.input_value("#cellfilter") == "sentinel-poll"
    assert page.evaluate("document.querySelectorAll('a.cell:not(.hidden)').length") == _cells_with("sentinel-poll")

    page.goto((index.parent / "scenario-eviction.html").as_uri())
    assert page.locator("#answer").count() == 1
    assert page.locator("table.answer").count() >= 2
    page.goto((index.parent / "cells" / f"{MEASURE}.html").as_uri())
    lanes = page.evaluate("Array.from(document.querySelectorAll('svg.timeline text')).map(t => t.textContent)")
    assert any("redelivered" in t for t in lanes)
    assert any("visibility timeout" in t for t in lanes)
    page.screenshot(path=str(ARTIFACTS / "reference-measure-stall.png"), full_page=True)
    page.goto((index.parent / "signatures" / "sentinel-poll-attributeerror.html").as_uri())
    assert "2 / 2" in page.content() and "issues/10084" in page.content()
    assert problems == []


def _cells_with(text: str) -> int:
    """Reference cells with a signature containing `text` (headline, findings or per-attempt rates)."""
    count = 0
    for line in (REFERENCE / "results.jsonl").read_text().splitlines():
        outcome = json.loads(line)["outcome"]
        names = [outcome.get("signature")] + [f.get("signature") for f in outcome.get("findings") or []]
        names += [r.get("signature") for r in outcome.get("metrics", {}).get("rates", []) if isinstance(r, dict)]
        count += any(text in (n or "") for n in names)
    return count
