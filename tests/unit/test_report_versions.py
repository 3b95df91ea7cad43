"""The report shows each record's versions and marks cells whose dependencies differ (issue 12)."""

from __future__ import annotations

from pathlib import Path

from lab.report.model import Entry, RunInfo, mark_version_deviations, versions_text
from lab.results import ResultRecord
from lab.verdict import Outcome, Verdict


def entry(celery: str, **versions) -> Entry:
    record = ResultRecord(run_id="r", cell_id=f"c-{celery}-{len(versions)}", cell={"celery": celery},
                          outcome=Outcome(Verdict.PASS), versions={"celery": celery, **versions})
    return Entry(record, RunInfo(Path("."), "r", {}))


def test_a_pinned_billiard_is_marked_against_the_runs_common_set():
    common = [entry("5.6.2", python="3.11.7", billiard="4.3.2", kombu="5.7.0") for _ in range(3)]
    pinned = entry("5.6.2", python="3.11.7", billiard="4.3.0", kombu="5.7.0")
    older = entry("5.3.6", python="3.11.7", billiard="4.2.4", kombu="5.3.7")   # another release: not compared
    never = entry("5.6.2")
    never.record.versions = {}                                               # nothing installed
    mark_version_deviations([*common, pinned, older, never])
    assert pinned.deps_differ == {"billiard": ("4.3.0", "4.3.2")}
    assert all(not e.deps_differ for e in [*common, older, never])
    assert versions_text(pinned.record) == "python 3.11.7 · kombu 5.7.0 · billiard 4.3.0"


def test_common_versions_per_celery_release():
    from lab.report.model import common_versions
    entries = [entry("5.6.2", python="3.11.7", billiard="4.3.2") for _ in range(2)]
    entries += [entry("5.6.2", python="3.11.7", billiard="4.3.0"), entry("5.3.6", python="3.11.7", kombu="5.3.7")]
    assert common_versions(entries) == [("5.3.6", "python 3.11.7 · kombu 5.3.7"),
                                        ("5.6.2", "python 3.11.7 · billiard 4.3.2")]


def test_axes_text_names_non_default_python_and_pins():
    plain, other = entry("5.6.2"), entry("5.6.2")
    other.record.cell.update(python="3.8", deps={"billiard": "4.2.4"})
    assert plain.axes_text == "" and other.axes_text == "py3.8 · billiard 4.2.4"


def test_rate_commands_carry_the_cells_python_and_pins():
    from lab.report.bundle import rate_commands
    e = entry("5.6.2")
    e.record.cell.update(scenario="shutdown-race", pool="prefork", broker="redis", backend="redis",
                         profile="quit", mode="targeted", python="3.9", deps={"billiard": "4.2.4"})
    assert e.axis_flags == " --python 3.9 --pin billiard==4.2.4"
    assert "--mode targeted --python 3.9 --pin billiard==4.2.4 -n 20" in rate_commands(e, ["5.6.2"])[0]
