"""Run the cells of one Celery version in parallel lanes (inside its venv).

Contract: `run_cells(run_dir, celery, only, lanes)` runs every planned,
not-yet-recorded cell of that version — resumable: an interrupted run is
continued by running it again. Per cell it provisions services through the
ServiceHub (in this process), runs `python -m lab.cellrun` in a process of
its own with a child owner token and a time bound, and afterwards sweeps
every process that token owns. A cell that produced no record (crash,
timeout, unavailable broker) gets an `error` record saying why. All
services are stopped when the function returns, also on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import __version__, hostinfo
from lab.matrix import Cell
from lab.plan import cell_estimate, load_plan, plan_cells, rerun_command, set_of
from lab.progress import Progress
from lab.reaper import OWNER_ENV, Reaper, child_token, kill_owned, owner_token
from lab.results import RECORD_FILE, ResultRecord, append_record, read_records
from lab.services import ServiceHub
from lab.services.base import ServiceError
from lab.verdict import Outcome, Verdict

CELL_SLACK_S = 120.0


class _Lanes:
    """The cell processes running now, so Ctrl-C can stop them all at once."""

    def __init__(self) -> None:
        import threading
        self.active: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.interrupted = False

    def stop_all(self) -> None:
        self.interrupted = True
        with self.lock:
            for proc in list(self.active):
                if proc.poll() is None:
                    proc.terminate()


LANES = _Lanes()


def namespace_for(cell: Cell, run_id: str) -> str:
    return "c" + hashlib.sha1(f"{run_id}/{cell.cell_id}".encode()).hexdigest()[:12]


def error_record(plan: dict, cell: Cell, summary: str, evidence: dict, started: float,
                 verdict: Verdict = Verdict.ERROR, signature: str = "lab-error") -> ResultRecord:
    figure = "lab error" if verdict is Verdict.ERROR else "setup failed"
    return ResultRecord(
        run_id=plan["run_id"], cell_id=cell.cell_id, cell=cell.to_dict(),
        outcome=Outcome(verdict, summary, signature, {"key_figure": figure}, evidence),
        versions=hostinfo.package_versions(), host=hostinfo.host_facts(), started_at=started,
        duration_s=round(time.time() - started, 3), rerun=rerun_command(plan, cell),
        lab_version=__version__)


def recorded(run_dir: Path, cell_id: str, since: float = 0.0) -> ResultRecord | None:
    """The record the cell process wrote (cells/<id>/record.json), if written after `since`
    (epoch seconds): one small file per cell, so bookkeeping stays O(1) per cell."""
    path = run_dir / "cells" / cell_id / RECORD_FILE
    try:
        if path.stat().st_mtime < since:
            return None
        return ResultRecord.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_one(plan: dict, cell: Cell, run_dir: Path, hub: ServiceHub, token: str) -> ResultRecord:
    started = time.time()
    cell_dir = run_dir / "cells" / cell.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    namespace = namespace_for(cell, plan["run_id"])
    try:
        services = hub.for_cell(cell.broker, cell.backend, cell_dir / "services", namespace)
    except (ServiceError, OSError) as exc:
        record = error_record(plan, cell, f"broker/backend could not be provided: {exc}"[:300],
                              {"service_error": str(exc)}, started, Verdict.SETUP_FAILED,
                              "setup:provision")
        append_record(run_dir, record)
        return record
    profile = (plan.get("profiles") or {}).get(cell.profile)
    if profile is None:
        from lab.catalog import PROFILES
        profile = PROFILES.get(cell.profile, {})
    spec = {"run_id": plan["run_id"], "run_dir": str(run_dir), "cell": cell.to_dict(),
            "broker_url": services.broker_url, "backend_url": services.backend_url,
            "namespace": namespace, "profile": profile, "services": services.describe(),
            "server_versions": {"broker_server": f"{services.broker.kind} {services.broker.version}",
                                "backend_server": f"{services.backend.kind} {services.backend.version}"},
            "rerun": rerun_command(plan, cell), "set": set_of(plan, cell)}
    spec_path = cell_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    cell_token = child_token(token, namespace)
    env = {**os.environ, OWNER_ENV: cell_token}
    bound = cell_estimate(cell) * 4 + CELL_SLACK_S
    out_path = cell_dir / "cellrun.log"
    proc = None
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "lab.cellrun", str(spec_path)], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
            with LANES.lock:
                LANES.active.add(proc)
            try:
                proc.wait(bound)
            except subprocess.TimeoutExpired:
                proc.terminate()  # SIGTERM: the cell tears its workers down
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    finally:
        with LANES.lock:
            LANES.active.discard(proc)
        leftovers = kill_owned(cell_token)
        hub.release(services)
    record = recorded(run_dir, cell.cell_id, since=started)
    if record is None and LANES.interrupted:
        raise KeyboardInterrupt  # not a result: a resumed run runs this cell again
    if record is None:
        tail = out_path.read_text(errors="replace")[-3000:] if out_path.exists() else ""
        why = (f"cell process exceeded its {bound:.0f}s bound" if proc and proc.returncode in (None, -15, -9)
               else f"cell process exited {proc.returncode} without a record")
        record = error_record(plan, cell, why, {"cellrun_log": tail}, started)
        append_record(run_dir, record)
    if leftovers:
        print(f"warning: {cell.cell_id}: swept {len(leftovers)} leftover process(es)", flush=True)
    return record


def run_cells(run_dir: Path, celery: str | None = None, only: list[str] | None = None,
              lanes: int | None = None, set_key: str | None = None) -> list[ResultRecord]:
    run_dir = Path(run_dir).resolve()
    plan = load_plan(run_dir)
    existing = list(read_records([run_dir]))
    done = {r.cell_id for r in existing}
    cells = [c for c in plan_cells(plan, celery, set_key) if c.cell_id not in done
             and (not only or c.cell_id in only)]
    lanes = lanes or int(plan.get("lanes", 2))
    total = len(plan["cells"]) if not only else len(cells) + len(existing)
    progress = Progress(total, existing, lanes, label=f"celery {celery or 'all'}")
    print(f"celery {celery}: {len(cells)} cell(s) to run in {lanes} lane(s); "
          f"{len(existing)} already recorded in {run_dir}", flush=True)
    token = owner_token()
    results: list[ResultRecord] = []
    with Reaper() as reaper, tempfile.TemporaryDirectory(prefix="lab-services-") as tmp:
        hub = ServiceHub(Path(tmp))
        reaper.add("stop services", hub.close)
        reaper.add("sweep run processes", lambda: kill_owned(token))

        def lane(cell: Cell) -> ResultRecord:
            t0 = time.monotonic()
            record = run_one(plan, cell, run_dir, hub, token)
            progress.update(record, time.monotonic() - t0)
            return record

        pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="lane")
        try:
            results = list(pool.map(lane, cells))
        except BaseException:
            LANES.stop_all()
            print("interrupted: stopping cell processes; finished cells are kept in "
                  f"{run_dir / 'results.jsonl'} and a rerun resumes the rest", flush=True)
            raise
        finally:
            pool.shutdown(wait=True, **({"cancel_futures": True} if sys.version_info >= (3, 9) else {}))  # 3.8 venvs
            progress.close()
    return results
