"""The report answers its three users: defects of issue 14, one test per kind."""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from lab.report import build_report
from lab.report.answer import settings_of, words
from lab.report.diff import previous_run
from lab.report.portable import link_if_exists, portable_command
from lab.report.style import STYLES, style
from lab.report.timeline import layout
from lab.results import append_record
from lab.verdict import Outcome, Verdict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from linkcheck import check  # noqa: E402

_spec = importlib.util.spec_from_file_location("lab_report_samples_answers", ROOT / "tests" / "fixtures" / "sample_records.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)


def _record(**cell):
    record = samples.make_records()[0]
    record.cell = dict(record.cell, **cell)
    record.cell_id = "--".join(str(record.cell[k]) for k in ("scenario", "celery", "pool", "broker", "profile", "mode"))
    return record


# --- dead links and absolute paths --------------------------------------------------------------

def test_missing_log_files_are_not_linked_and_commands_are_portable(tmp_path):
    record = _record()
    record.logs = {"worker": "cells/x/attempt-1/worker.log", "journal": "cells/x/attempt-1/journal.jsonl"}
    record.rerun = 'nox -s "cells-5.6.0" -- --matrix /home/ci/checkout/matrices/default.toml --only ' + record.cell_id
    record.environment = {"workers": [{"argv": ["/srv/build/lab/.nox/cells-5-6-0/bin/python", "-m", "celery"]}]}
    (tmp_path / "run").mkdir()
    append_record(tmp_path / "run", record)
    index = build_report([tmp_path / "run"], tmp_path / "out")
    dead, external = check(index.parent)
    assert dead == [] and external == []
    page = next((index.parent / "cells").glob("*.html")).read_text()
    assert "worker.log" in page and 'href="../../run/cells/x' not in page
    assert "/home/ci" not in page and "/srv/build" not in page
    assert "--matrix matrices/default.toml" in page
    assert "/home/ci" not in (index.parent / "results.json").read_text()
    assert "/home/ci" not in (index.parent / "junit.xml").read_text()


def test_portable_command_and_link_if_exists(tmp_path):
    assert portable_command("--matrix /work/main/matrices/a.toml") == "--matrix matrices/a.toml"
    assert portable_command("/tmp/abc/x.sqlite") == "<path>/x.sqlite"
    assert portable_command("https://github.com/celery/celery") == "https://github.com/celery/celery"
    (tmp_path / "a.log").write_text("x")
    assert link_if_exists(tmp_path / "a.log", tmp_path / "sub") == "../a.log"
    assert link_if_exists(tmp_path / "missing.log", tmp_path) == ""


# --- "tested, not seen" over the exact slice ----------------------------------------------------

def test_signature_slices_count_only_where_the_slice_ran(tmp_path):
    from lab.report.loader import load
    from lab.report.slices import signature_slices

    (tmp_path / "run").mkdir()
    seen = _record(celery="5.6.2", mode="targeted")
    seen.outcome = Outcome(Verdict.BUG, "x", "sig-x", metrics={"attempts": 4, "rates": [
        {"verdict": "bug", "signature": "sig-x", "k": 3, "n": 4}, {"verdict": "pass", "signature": None, "k": 1, "n": 4}]})
    clean = _record(celery="5.5.3", mode="targeted")
    clean.outcome = Outcome(Verdict.PASS, "ok", metrics={"attempts": 4})
    other_mode = _record(celery="5.7.0", mode="random")   # another slice: must not read "not seen on 5.7.0"
    other_mode.outcome = Outcome(Verdict.PASS, "ok")
    for r in (seen, clean, other_mode):
        append_record(tmp_path / "run", r)
    report = load([tmp_path / "run"])
    slices = signature_slices("sig-x", report.entries)
    assert len(slices) == 1
    rows = {r.version: (r.k, r.n) for r in slices[0].rows}
    assert rows == {"5.5.3": (0, 4), "5.6.2": (3, 4)}
    assert slices[0].first_bad == "5.6.2" and slices[0].last_good == "5.5.3"
    assert "not reproduced in 4 attempts" in slices[0].rows[0].words
    index = build_report([tmp_path / "run"], tmp_path / "out")
    page = (index.parent / "signatures" / "sig-x.html").read_text()
    assert "3 / 4" in page and "0 / 4" in page and "5.7.0" not in page


# --- timeline ------------------------------------------------------------------------------------

def test_timeline_draws_one_box_per_execution_on_its_process():
    journal = [
        {"event": "worker_init", "pid": 10, "mono": 0.0}, {"event": "child_init", "pid": 11, "mono": 0.5},
        {"event": "exec_start", "pid": 11, "task_id": "t1", "task": "lab.member", "mono": 1.0},
        {"event": "worker_init", "pid": 20, "mono": 3.0}, {"event": "child_init", "pid": 21, "mono": 3.5},
        {"event": "exec_start", "pid": 21, "task_id": "t1", "task": "lab.member", "mono": 30.0, "redelivered": True},
        {"event": "exec_end", "pid": 21, "task_id": "t1", "task": "lab.member", "mono": 40.0},
        {"event": "race_inject", "pid": 20, "signal": "QUIT", "point": "up", "mono": 41.0},
    ]
    faults = [{"kind": "signal", "signal": "SIGTERM", "target": "master", "pid": 10, "mono": 2.0},
              {"kind": "start", "worker": "replacement", "detail": "prefork", "mono": 2.0},
              {"kind": "kill", "signal": "SIGKILL", "target": "group", "pid": 10, "mono": 6.0}]
    tl = layout(journal, faults, {"observed_until_s": 45.0, "visibility_timeout_s": 20.0})
    lanes = {lane.label: lane for lane in tl.lanes}
    bars = sorted(tl.bars, key=lambda b: b.x)
    assert len(bars) == 2
    killed, rerun = bars
    assert lanes["child 11"].y <= killed.y < lanes["child 11"].y + lanes["child 11"].height
    assert lanes["child 21"].y <= rerun.y < lanes["child 21"].y + lanes["child 21"].height
    assert "bar-open" in killed.css and "killed" in killed.title and "redelivered" in rerun.title
    labels = [f.label for f in tl.faults]
    assert "SIGQUIT→master (hook up)" in labels   # the hook-sent signal is drawn
    assert "observation ends" in labels and "visibility timeout 20 s expires" in labels
    spans = sorted((f.y, f.x, f.x + 6.2 * len(f.label) + 8) for f in tl.faults if not f.w)
    for (y1, a1, b1), (y2, a2, b2) in zip(spans, spans[1:]):
        assert y1 != y2 or a2 >= b1, "fault labels on one row overlap"
    assert all(f.x + (0 if f.w else 6.2 * len(f.label)) <= tl.width for f in tl.faults)


# --- profiles named by what they apply; words ----------------------------------------------------

def test_profiles_expand_into_settings_env_and_code():
    assert ("setting", "task_acks_late=True") in settings_of("acks-late")
    assert ("env", "REMAP_SIGTERM=SIGQUIT") in settings_of("soft-shutdown+remap-sigterm")
    code = [t for k, t in settings_of("finalize-on-shutdown") if k == "code"]
    assert code and "application pattern, not a Celery setting" in code[0]
    assert not any("LAB_" in t for _, t in settings_of("finalize-on-shutdown"))


def test_answer_view_says_what_happened_in_words(tmp_path):
    from lab.report.model import Entry, RunInfo

    stall = _record(scenario="eviction", celery="5.6.0", profile="acks-late", mode="measure-stall")
    stall.outcome = Outcome(Verdict.STALL, "callback fired 112s after SIGTERM", "visibility-timeout-stall",
                            metrics={"stall_s": 112.0, "visibility_timeout_s": 20.0, "key_figure": "stall 112s"})
    lost = _record(scenario="eviction", celery="5.6.0", profile="defaults", mode="measure-stall")
    lost.outcome = Outcome(Verdict.LOST, "gone", metrics={"observed_until_s": 13.0})
    run = RunInfo(tmp_path, "r", {})
    assert words(Entry(stall, run))[0] == "completed after 112 s (waited out a timeout)"
    assert words(Entry(lost, run))[0] == "lost: never completed"
    assert Entry(stall, run).label == "5.6.0 prefork redis acks-late measure-stall: stall 112s"
    (tmp_path / "run").mkdir()
    for r in (stall, lost):
        append_record(tmp_path / "run", r)
    index = build_report([tmp_path / "run"], tmp_path / "out")
    page = (index.parent / "scenario-eviction.html").read_text()
    assert 'id="answer"' in page and "completed after 112 s" in page and "task_acks_late=True" in page
    assert "stands for Redis transport default 3600 s (1 h)" in page
    assert 'aria-label="5.6.0 prefork redis acks-late measure-stall: stall 112s"' in page


# --- CI: junit, --fail-on, previous baseline -----------------------------------------------------

def test_junit_findings_and_regressions_modes(tmp_path):
    samples.write_run(tmp_path / "current", "current")
    samples.write_run(tmp_path / "baseline", "baseline")
    out = build_report([tmp_path / "current"], tmp_path / "f", junit="findings").parent
    root = ET.parse(out / "junit.xml").getroot()
    assert root.get("failures") == "4"
    out = build_report([tmp_path / "current"], tmp_path / "r", baseline=tmp_path / "baseline",
                       junit="regressions").parent
    failures = [c for c in ET.parse(out / "junit.xml").iter("testcase") if c.find("failure") is not None]
    assert failures and all(c.find("failure").get("type") == "regression" for c in failures)
    assert all("was pass" in c.find("failure").get("message") for c in failures if "threads" not in c.get("name"))


def test_fail_on_worse_and_baseline_previous(tmp_path, monkeypatch):
    from lab import cli

    runs = tmp_path / "runs"
    samples.write_run(runs / "20240101-120000-base01", "baseline")
    samples.write_run(runs / "20240102-120000-curr01", "current")
    monkeypatch.setattr(cli, "REPORTS", tmp_path)
    assert previous_run(runs, [runs / "20240102-120000-curr01"]) == runs / "20240101-120000-base01"
    result = CliRunner().invoke(cli.main, ["report", str(runs / "20240102-120000-curr01"), "--baseline", "previous",
                                           "--out", str(tmp_path / "html"), "--fail-on", "worse"])
    assert result.exit_code == 1
    assert "worse than baseline 20240101-120000-base01" in result.output
    banner = (tmp_path / "html" / "index.html").read_text()
    assert 'id="what-changed"' in banner and "3 worse" in banner
    assert banner.count("chip v-") and 'class="cell chip v-bug changed"' in banner


# --- palette -------------------------------------------------------------------------------------

def _deuteranopia(hex_colour):
    # Machado et al. (2009), severity 1.0, applied in linear RGB
    def lin(c):
        c = int(c, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(hex_colour[i:i + 2]) for i in (1, 3, 5))
    m = ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881))
    return tuple(min(1, max(0, row[0] * r + row[1] * g + row[2] * b)) for row in m)


def test_palette_stays_distinct_under_deuteranopia_and_every_chip_has_text():
    names = ["pass", "bug", "lost", "duplicate", "hang", "silent-exit", "stall", "failed-fast"]
    sim = {n: _deuteranopia(STYLES[n].bg) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            distance = sum((x - y) ** 2 for x, y in zip(sim[a], sim[b])) ** 0.5
            assert distance > 0.08, (a, b, distance)
    assert all(STYLES[n].label for n in STYLES)
    assert style("setup-failed").lab_failure and style("from-the-future").css == "v-unknown"


def test_findings_list_is_read_when_present(tmp_path):
    from lab.report.model import findings

    record = _record()
    record.outcome.findings = [{"verdict": "bug", "signature": "a", "summary": "crash", "evidence": {}},
                               {"verdict": "incomplete", "signature": None, "summary": "never completed in 20 s"}]
    assert [f["verdict"] for f in findings(record)] == ["bug", "incomplete"]
    record.outcome.findings = None
    assert findings(record)[0]["verdict"] == record.outcome.verdict.value


def test_repeated_cell_shows_every_attempt_labelled(tmp_path):
    record = _record(repeats=2)
    journal = [{"event": "worker_init", "pid": 1, "mono": 0.0},
               {"event": "exec_start", "pid": 1, "task_id": "t", "task": "lab.churn", "mono": 1.0}]
    record.outcome = Outcome(Verdict.HANG, "shutdown-hang: 1/2", "shutdown-hang", metrics={
        "attempts": 2, "attempt_records": [
            {"attempt": 1, "verdict": "hang", "signature": "shutdown-hang", "journal": journal, "faults": []},
            {"attempt": 2, "verdict": "pass", "signature": None, "journal": journal, "faults": []}]})
    (tmp_path / "run").mkdir()
    append_record(tmp_path / "run", record)
    index = build_report([tmp_path / "run"], tmp_path / "out")
    page = next((index.parent / "cells").glob("*.html")).read_text()
    assert "attempt 1: hang shutdown-hang" in page and "attempt 2: pass" in page
    assert page.count('<svg class="timeline"') == 2
    assert "attempt_records" not in page


def test_repro_bundle_is_generated_from_the_record_and_runs_without_the_lab(tmp_path):
    record = _record(scenario="shutdown-race", celery="5.6.2", profile="term-remap-quit", mode="targeted")
    record.outcome = Outcome(Verdict.BUG, "crash", "sentinel-poll-attributeerror")
    record.environment = {"workers": [{"argv": ["env", "--default-signal", "/work/main/.nox/c/bin/python", "-m",
                                                "celery", "-A", "lab.app.celery_app", "worker", "-P", "prefork",
                                                "-n", "w@lab", "-Q", "lab.q", "--max-tasks-per-child=1"]}]}
    record.faults = [{"kind": "start", "mono": 10.0}]
    record.journal = [{"event": "race_inject", "signal": "QUIT", "point": "up", "pid": 5, "mono": 12.5}]
    (tmp_path / "run").mkdir()
    append_record(tmp_path / "run", record)
    index = build_report([tmp_path / "run"], tmp_path / "out")
    bundle = next((index.parent / "repro").iterdir())
    files = {p.name: p.read_text() for p in bundle.iterdir()}
    assert set(files) == {"README.md", "app.py", "worker.sh", "trigger.py", "rate.sh"}
    assert "celery -A app worker -P prefork --max-tasks-per-child=1 &" in files["worker.sh"]
    assert "export REMAP_SIGTERM=SIGQUIT" in files["worker.sh"] and "/work/main" not in files["worker.sh"]
    assert "(2.5, 'SIGQUIT', 'master')" in files["trigger.py"] and "inside* the master" in files["README.md"]
    assert "lab triage shutdown-race --celery 5.6.2" in files["rate.sh"] and "lab bisect" in files["rate.sh"]
    assert "import lab" not in files["app.py"] + files["trigger.py"]
    for name in ("app.py", "trigger.py"):
        compile(files[name], name, "exec")
    page = next((index.parent / "cells").glob("*.html")).read_text()
    assert f'href="../repro/{bundle.name}/README.md"' in page


def test_the_soft_shutdown_timeout_shown_is_the_one_the_record_ran_with():
    """A record says which worker_soft_shutdown_timeout it ran with (the reference ran 3 s, the
    catalog now 1 s); the answer's scaled row comes from the record, scaled with the grace."""
    from lab.report.answer import scaled
    from lab.report.model import Entry

    record = _record(scenario="eviction", profile="soft-shutdown+remap-sigterm")
    record.outcome = Outcome(Verdict.PASS, "ok", metrics={"soft_shutdown_timeout_s": 3.0, "grace_s": 4.0,
                                                          "production_grace_s": 60.0})
    rows = scaled([Entry(record=record, run=None)])
    assert ("worker_soft_shutdown_timeout", "3 s",
            "45 s of a 60 s grace (set per deployment; Celery default 0: off)") in rows
    record.outcome = Outcome(Verdict.PASS, "ok", metrics={})  # an older record: no row, rather than a wrong one
    assert not [r for r in scaled([Entry(record=record, run=None)]) if "soft" in r[0]]
