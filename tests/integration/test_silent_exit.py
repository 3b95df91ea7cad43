"""silent-exit against real workers and a real Redis: a representative subset of
conditions x pools (the matrix runs them all). Each cell must reach a verdict
from observation — never `error` —, its verdict must agree with the raw facts,
and nothing may survive it."""

from __future__ import annotations

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.cellrun import run_cell  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.results import create_run_dir  # noqa: E402
from lab.scenarios import silent_exit  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def run(tmp_path, hub, pool, mode, monkeypatch, bound=12.0):
    import celery
    monkeypatch.setattr(silent_exit, "START_BOUND", bound)  # hangs are bounded tighter than in the matrix
    cell = Cell(celery.__version__, pool, "redis", "redis", "silent-exit", "defaults", mode)
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "se")
    run_dir = create_run_dir(tmp_path, "se")
    record = run_cell({"run_id": "se", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "se", "profile": {}})
    outcome = record.outcome
    assert outcome.verdict.value != "error", outcome.evidence
    return record, outcome


def consistent(outcome):
    """The verdict follows from the facts it reports (the checker's rule, restated)."""
    m = outcome.metrics
    if outcome.verdict.value == "pass":
        assert m["class"] in ("ready/ready", "failed-loudly/failed-loudly")
    elif outcome.verdict.value == "hang":
        assert m["exit_code"] is None
    elif outcome.verdict.value == "silent-exit":
        assert m["exit_code"] is not None and m["class"].startswith("silent-exit/")


def test_baseline_solo_reaches_ready(tmp_path, hub, monkeypatch):
    _, outcome = run(tmp_path, hub, "solo", "baseline", monkeypatch)
    assert outcome.verdict.value == "pass" and outcome.metrics["class"] == "ready/ready", outcome.summary


@pytest.mark.parametrize("pool,mode", [("prefork", "sigterm-consumer"), ("threads", "sigquit-connect")])
def test_signal_at_a_startup_moment(tmp_path, hub, monkeypatch, pool, mode):
    record, outcome = run(tmp_path, hub, pool, mode, monkeypatch)
    hooks = [e for e in record.journal if e["event"] == "startup_hook"]
    assert len(hooks) == 1, record.journal  # fired once, in the master
    assert hooks[0]["action"] == mode.split("-")[0].upper() and hooks[0]["moment"] == mode.split("-")[1]
    assert "hook" in outcome.evidence and "handler then:" in outcome.evidence["hook"]
    consistent(outcome)


def test_broker_that_never_answers_is_bounded(tmp_path, hub, monkeypatch):
    _, outcome = run(tmp_path, hub, "threads", "broker-silent", monkeypatch, bound=10.0)
    consistent(outcome)
    assert outcome.metrics["elapsed_s"] <= 14.0


def test_pipe_status_and_inner_status(tmp_path, hub, monkeypatch):
    """`| tee` under a PID-1 shell: the supervisor sees tee's status, the lab records the worker's."""
    _, outcome = run(tmp_path, hub, "solo", "pid1-tee", monkeypatch)
    if outcome.verdict.value == "n/a":
        pytest.skip(outcome.summary)
    consistent(outcome)
    assert outcome.metrics["exit_code"] == 0  # tee's status, by construction of the pipeline
    assert "inner_status" in outcome.evidence


def test_fork_refused_runs_unprivileged(tmp_path, hub, monkeypatch):
    _, outcome = run(tmp_path, hub, "prefork", "fork-refused", monkeypatch)
    if outcome.verdict.value == "n/a":
        pytest.skip(outcome.summary)
    consistent(outcome)
    assert "RLIMIT_NPROC" in outcome.evidence["notes"]
