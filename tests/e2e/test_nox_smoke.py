"""End to end: `nox -s matrix -- --matrix smoke` on this machine, then the
report it built opened in headless Chromium.

Done when: every cell has a verdict and none is `error`, the HTML opens with
no console errors and a cell per record, a cell link opens its page, and no
process the run started is left (the autouse owner fixture checks that).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from chromium import ARTIFACTS, REPO, screenshot
from lab.results import read_records

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if not shutil.which("nox"):
        pytest.fail("nox is not on PATH: install the test extras (pip install -e .[test])")
    reports = tmp_path_factory.mktemp("reports")
    env = {**os.environ, "LAB_REPORTS_DIR": str(reports)}
    # its own envdir: nox's uv backend passes --clear, and uv refuses to clear a directory that is
    # not (yet) a venv, which the suite's own .nox/ once had at that moment (a CI run of 1025d2e)
    envdir = tmp_path_factory.mktemp("nox-envdir")
    proc = subprocess.run(["nox", "--envdir", str(envdir), "-s", "matrix", "--", "--matrix", "smoke"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1400)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the whole output, for a failure the repr truncates
    (ARTIFACTS / "nox-smoke.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return proc, reports


def test_smoke_matrix_through_nox(smoke_run):
    proc, reports = smoke_run
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "matrix smoke: 10 cells" in output and "estimated" in output
    assert "[10/10]" in output  # live progress reached the end
    run_dir = (reports / "latest").resolve()
    records = list(read_records([run_dir]))
    assert len(records) == 10
    assert [r.cell_id for r in records if r.outcome.verdict.value == "error"] == []
    pools = {r.cell["pool"] for r in records}
    assert pools == {"prefork", "gevent", "eventlet", "threads", "solo"}
    for record in records:
        assert record.versions["celery"] == "5.6.2" and record.versions["kombu"] != "not installed"
        assert record.versions["broker_server"]
    assert (run_dir / "index.html").exists() and (run_dir / "junit.xml").exists()
    assert f"report: {run_dir / 'index.html'}" in output


def test_smoke_report_in_chromium(smoke_run, browser):
    proc, reports = smoke_run
    assert proc.returncode == 0
    run_dir = (reports / "latest").resolve()
    records = list(read_records([run_dir]))
    cdp = browser
    cdp.navigate((run_dir / "index.html").as_uri())
    ids = cdp.js("Array.from(document.querySelectorAll('a.cell')).map(a => a.dataset.cellId)")
    assert sorted(ids) == sorted(r.cell_id for r in records)
    screenshot(cdp, ARTIFACTS / "smoke-overview.png")
    mark = len(cdp.events)
    cdp.js("document.querySelector('a.cell').click()")
    cdp.wait_for("Page.loadEventFired", after=mark)
    assert cdp.js("location.pathname").endswith(".html") and "/cells/" in cdp.js("location.pathname")
    assert cdp.js("document.querySelector('h1').textContent.trim()") in ids
    assert cdp.problems() == []
