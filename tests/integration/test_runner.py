"""The runner end to end inside one venv: plan, cells, records, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.matrix import parse_matrix
from lab.plan import make_plan, write_plan
from lab.reaper import find_owned
from lab.results import create_run_dir, read_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def small_plan(tmp_path, pools, brokers=("redis",)):
    import celery
    data = {"matrix": {"celery": [celery.__version__], "pools": list(pools), "brokers": list(brokers),
                       "scenarios": ["lifecycle-smoke"], "lanes": 2}}
    matrix = parse_matrix(data, "it.toml", "it")
    run_dir = create_run_dir(tmp_path, "it-run")
    write_plan(run_dir, make_plan(matrix, "it-run"))
    return run_dir


def test_run_cells_records_every_cell(tmp_path):
    from lab.runner import run_cells
    run_dir = small_plan(tmp_path, ["solo", "threads"], ["redis", "sql"])
    run_cells(run_dir)
    records = list(read_records([run_dir]))
    assert len(records) == 4
    for record in records:
        assert record.outcome.verdict.value != "error", record.outcome.evidence
        assert record.versions["celery"] and record.versions["kombu"] and record.versions["broker_server"]
        assert record.rerun.startswith("nox -s")
        assert (run_dir / record.logs["worker"]).exists()
        assert any(e["event"] == "worker_ready" for e in record.journal)
    assert run_cells(run_dir) == []  # resumable: nothing left to do


def test_ctrl_c_keeps_finished_cells_and_leaves_nothing(tmp_path, owner_token):
    run_dir = small_plan(tmp_path, ["solo", "threads", "gevent", "eventlet"])
    # SIGINT at its default: a suite started from a non-interactive shell's background job inherits it
    # ignored, and Python then installs no KeyboardInterrupt handler (the Ctrl-C would do nothing)
    proc = subprocess.Popen([sys.executable, "-m", "lab", "run-cells", "--run-dir", str(run_dir),
                             "--lanes", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "results.jsonl").exists():
        time.sleep(0.2)
    time.sleep(2.0)  # the second cell's worker is starting or running now
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out.decode()[-2000:]
    text = out.decode(errors="replace")
    assert f"nox -s matrix -- --resume {run_dir.resolve()}" in text, text[-2000:]  # the exact command
    records = list(read_records([run_dir]))
    assert 1 <= len(records) < 4
    assert all(r.outcome.verdict.value != "error" for r in records)
    assert find_owned(owner_token) == []
    plan = json.loads((run_dir / "plan.json").read_text())
    assert len(plan["cells"]) == 4


def test_three_shards_merge_into_the_single_run(tmp_path):
    """Issue 15: N=3 shards, run apart and merged by the report, hold the same cells and the same
    verdicts as one run of the whole plan (lifecycle-smoke cells are deterministic)."""
    import celery

    from lab.report.loader import load
    from lab.runner import run_cells
    data = {"matrix": {"celery": [celery.__version__], "pools": ["solo", "threads", "prefork"],
                       "brokers": ["redis"], "scenarios": ["lifecycle-smoke"], "lanes": 2}}
    matrix = parse_matrix(data, "shards.toml", "shards")
    whole = create_run_dir(tmp_path, "whole")
    write_plan(whole, make_plan(matrix, "whole"))
    run_cells(whole)
    shards = []
    for index in (1, 2, 3):
        run_dir = create_run_dir(tmp_path, f"shard{index}")
        write_plan(run_dir, make_plan(matrix, f"shard{index}", (index, 3)))
        run_cells(run_dir)
        shards.append(run_dir)
    single = {r.cell_id: r.outcome.verdict.value for r in read_records([whole])}
    merged = load(shards)
    assert {e.record.cell_id: e.verdict.value for e in merged.entries} == single
    assert not any(cell.planned for t in merged.scenarios for s in t.sections for cell in s.cells.values())
    assert merged.shard_notes[0].startswith(f"plan {json.loads((shards[0] / 'plan.json').read_text())['plan_id']}: 3 of 3")
