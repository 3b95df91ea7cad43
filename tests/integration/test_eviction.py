"""The eviction scenario against a real worker and a real Redis: it must reach
a verdict from observation, with its evidence, and leave nothing running."""

from __future__ import annotations

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.catalog import PROFILES  # noqa: E402
from lab.cellrun import run_cell  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.results import create_run_dir  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.mark.parametrize("profile", ["acks-late", "finalize-on-shutdown"])
def test_eviction_cell_is_judged_from_observation(tmp_path, hub, profile):
    import celery
    cell = Cell(celery.__version__, "prefork", "redis", "redis", "eviction", profile, "verdict")
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "ev")
    run_dir = create_run_dir(tmp_path, "ev")
    record = run_cell({"run_id": "ev", "run_dir": str(run_dir), "cell": cell.to_dict(),
                       "broker_url": services.broker_url, "backend_url": services.backend_url,
                       "namespace": "ev", "profile": PROFILES[profile]})
    outcome = record.outcome
    assert outcome.verdict.value not in ("error", "n/a"), outcome.evidence
    assert "snapshot_after_kill" in outcome.evidence and outcome.metrics["grace_s"] == 4.0
    kinds = [(f["kind"], f.get("signal"), f["worker"]) for f in record.faults]
    assert ("signal", "SIGTERM", "old") in kinds
    assert ("start", None, "replacement") in kinds
    if not outcome.metrics["exited_in_grace"]:
        assert ("signal", "SIGKILL", "old") in kinds
    ready_pids = {e["pid"] for e in record.journal if e["event"] == "worker_ready"}
    assert len(ready_pids) == 2  # the old worker and its replacement both came up
