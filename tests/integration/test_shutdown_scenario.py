"""The shutdown scenario against real workers and a real Redis: a representative
subset of plans x pools x profiles (the matrix runs them all). Each cell must be
judged from observation — never `error` —, with its signals, its task ledger and
a drain worker on record, and nothing may survive it."""

from __future__ import annotations

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.catalog import PROFILES, SOFT_SHUTDOWN_S  # noqa: E402
from lab.cellrun import run_cell  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.results import create_run_dir  # noqa: E402
from lab.scenarios.shutdown_semantics import PLANS  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.mark.parametrize("pool,profile,plan", [("prefork", "defaults", "term"),
                                               ("threads", "acks-late", "quit"),
                                               ("gevent", "acks-late", "soft-quit")])
def test_shutdown_plan_is_judged_from_observation(tmp_path, hub, pool, profile, plan):
    import celery
    cell = Cell(celery.__version__, pool, "redis", "redis", "shutdown", profile, plan)
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "sd")
    run_dir = create_run_dir(tmp_path, "sd")
    record = run_cell({"run_id": "sd", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "sd", "profile": PROFILES[profile]})
    outcome = record.outcome
    assert outcome.verdict.value != "error", outcome.evidence
    if outcome.verdict.value == "n/a":  # e.g. soft shutdown on a Celery without the setting
        assert "soft_shutdown" in outcome.summary or "REMAP" in outcome.summary
        return
    sent = [f["signal"] for f in record.faults if f["kind"] == "signal" and f["worker"] == "worker"]
    assert sent == PLANS[plan]["signals"]
    if outcome.metrics["exit_code"] is not None:  # exited: a drain worker shows what came back
        assert any(f["kind"] == "start" and f["worker"] == "drain" for f in record.faults)
    assert outcome.metrics["n_running"] >= 1, outcome.evidence["tasks"]
    assert outcome.metrics["semantics"] == PLANS[plan]["semantics"]
    # the headline follows from the deviations found, and every deviation is shown
    deviations = outcome.metrics.get("deviations", [])
    assert (outcome.verdict.value == "pass") == (not deviations), outcome.summary
    for code in deviations:
        assert code in outcome.evidence["deviations"]


@pytest.mark.parametrize("pool", ["prefork", "gevent"])
def test_soft_shutdown_profile_turns_remap_term_into_a_soft_shutdown(tmp_path, hub, pool):
    """Issue 13, inputs 1-2: the profile's worker_soft_shutdown_timeout makes REMAP_SIGTERM's cold
    shutdown a soft one, so a prompt exit after the profile's timeout (lab.catalog.SOFT_SHUTDOWN_S) is not
    `cold-slow-exit`; a traceback
    the worker printed, if any, heads the outcome over the timing symptoms it caused."""
    import celery
    from lab.scenarios.shutdown import soft_shutdown_supported
    if not soft_shutdown_supported():
        pytest.skip(f"celery {celery.__version__} has no worker_soft_shutdown_timeout")
    cell = Cell(celery.__version__, pool, "redis", "redis", "shutdown", "soft-shutdown", "remap-term")
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "ss")
    run_dir = create_run_dir(tmp_path, "ss")
    record = run_cell({"run_id": "ss", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "ss", "profile": PROFILES["soft-shutdown"]})
    outcome = record.outcome
    assert outcome.verdict.value not in ("error", "n/a"), outcome.summary
    assert outcome.metrics["semantics"] == "soft" and outcome.metrics["soft_timeout_s"] == SOFT_SHUTDOWN_S
    assert "stall:cold-slow-exit" not in outcome.finding_keys()
    crashes = [f for f in outcome.findings if f.crash]
    if crashes:
        assert outcome.signature == crashes[0].signature, outcome.summary
    elif outcome.metrics.get("exit_code") == 0:
        assert "stall:soft-slow-exit" not in outcome.finding_keys(), outcome.summary
