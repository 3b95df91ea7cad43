"""The chord-stall scenario against real workers, a real Redis and SQLite: each cell
must reach a verdict from observation with its evidence, and leave nothing running.
No test asserts which verdict Celery earns — only that one was observed."""

from __future__ import annotations

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.catalog import PROFILES  # noqa: E402
from lab.cellrun import run_cell  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.results import create_run_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _run(tmp_path, hub, pool, backend, profile, mode):
    import celery
    cell = Cell(celery.__version__, pool, "redis", backend, "chord-stall", profile, mode)
    services = hub.for_cell("redis", backend, tmp_path / "svc", "cs")
    run_dir = create_run_dir(tmp_path, "cs")
    return run_cell({"run_id": "cs", "run_dir": str(run_dir), "cell": cell.to_dict(),
                     "broker_url": services.broker_url, "backend_url": services.backend_url,
                     "namespace": "cs", "profile": PROFILES[profile]})


def test_child_death_kills_the_members_child(tmp_path, hub):
    record = _run(tmp_path, hub, "prefork", "redis", "acks-late+reject-on-worker-lost", "child-death")
    outcome = record.outcome
    assert outcome.verdict.value not in ("error", "n/a"), outcome.evidence
    kills = [f for f in record.faults if f["kind"] == "kill" and f.get("target") == "child"]
    assert len(kills) == 1
    member_pids = {e["pid"] for e in record.journal if e["event"] == "exec_start" and e.get("key") == "member-3"}
    assert kills[0]["pid"] in member_pids  # exactly the child that ran the member
    assert outcome.metrics["worker_lost_log_lines"] + outcome.metrics["worker_lost_failures"] >= 1
    assert outcome.metrics["key_figure"] and "worker_lost_log" in outcome.evidence


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_lost_member_is_removed_before_any_worker_runs_it(tmp_path, hub, backend):
    record = _run(tmp_path, hub, "prefork", backend, "defaults", "lost-member")
    outcome = record.outcome
    assert outcome.verdict.value not in ("error", "n/a"), outcome.evidence
    assert "removed': True" in outcome.evidence["removal"]
    assert not [e for e in record.journal if e["event"] == "exec_start" and e.get("key") == "member-3"]
    assert outcome.metrics["key_figure"]
    if backend == "sqlite":  # no native join: celery.chord_unlock is what waits, and it is counted
        assert outcome.metrics["unlock_polls"] >= 1
    else:
        assert outcome.metrics["join_counter"] is not None


def test_time_limit_is_judged_with_its_evidence(tmp_path, hub):
    record = _run(tmp_path, hub, "prefork", "redis", "defaults", "time-limit")
    outcome = record.outcome
    assert outcome.verdict.value not in ("error", "n/a"), outcome.evidence
    assert "limit_enforced" in outcome.metrics and outcome.metrics["key_figure"]
    assert "hard_limit_log" in outcome.evidence and "body_states_seen" in outcome.evidence


def test_child_death_is_na_without_pool_children(tmp_path, hub):
    record = _run(tmp_path, hub, "threads", "redis", "defaults", "child-death")
    assert record.outcome.verdict.value == "n/a" and "no pool child" in record.outcome.summary
