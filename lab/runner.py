"""Run planned cells in parallel lanes: one version's, one set's, or every set's in one schedule.

Contract: `run_cells(run_dir, celery, only, lanes, set_key, pythons)` runs
every planned, not-yet-recorded cell of that version / set (with `pythons`:
of every given set, each with its venv's interpreter, longest estimate
first) — resumable: an interrupted run is continued by running it again. It
first claims the run dir (lab.resume: RunnerBusy if a live runner has it;
leftovers of a dead one are killed) and starts a watchdog (lab.watchdog)
that sweeps if this process is killed. Per cell it records an n/a that
follows from the cell alone without provisioning or a lane
(Scenario.not_for), else
provisions fresh services through the ServiceHub (in this process;
namespaces carry the claim's generation; none for a scenario that owns its
broker; a broker-fault cell on a local RabbitMQ may claim a node booted
ahead, lab.services.spares, which this process kills and reaps after the
cell), runs the cell process — forked from its set's cell server
(lab.cellservers), or `python -m lab.cellrun` — with a child owner token, a
time bound and a parent-death signal, and afterwards sweeps every process
that token owns. A cell that produced no record (crash, timeout, unavailable broker)
gets an `error` record saying why. All services are stopped and the shared
services' temp dir is removed when the function returns, also on Ctrl-C; on
Ctrl-C or a crash it prints the exact resume command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from lab import __version__, hostinfo
from lab.matrix import Cell
from lab.plan import cell_estimate, load_plan, plan_cells, rerun_command, set_of, static_na
from lab.progress import Progress
from lab.hostspeed import SPEED_FILE, SpeedLog
from lab.lanes import LaneGate
from lab.lifetime import popen
from lab.reaper import (OWNER_ENV, Reaper, child_token, ensure_scope, kill_owned, owned_temp_dir, owner_token,
                        remove_stale_temp_dirs)
from lab.resume import claim, resume_command
from lab.results import RECORD_FILE, ResultRecord, append_record, read_records
from lab.services import ServiceHub
from lab.services.base import ServiceError
from lab.services.spares import SpareNodes
from lab.verdict import Outcome, Verdict
from lab.cellservers import CellServers
from lab.watchdog import Watchdog

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
SERVERS: CellServers | None = None  # one fork server per set interpreter while a schedule runs
SPARES: SpareNodes | None = None     # RabbitMQ nodes booted ahead for broker-fault cells (lab.services.spares)


def namespace_for(cell: Cell, run_id: str, generation: int = 1) -> str:
    """The cell's queue/file/database/vhost namespace; a resume (generation > 1)
    never reuses the names an interrupted runner used."""
    key = f"{run_id}/{cell.cell_id}" + (f"/g{generation}" if generation > 1 else "")
    return "c" + hashlib.sha1(key.encode()).hexdigest()[:12]


def error_record(plan: dict, cell: Cell, summary: str, evidence: dict, started: float,
                 verdict: Verdict = Verdict.ERROR, signature: str = "lab-error") -> ResultRecord:
    figure = {Verdict.ERROR: "lab error", Verdict.NA: "n/a"}.get(verdict, "setup failed")
    return ResultRecord(
        run_id=plan["run_id"], cell_id=cell.cell_id, cell=cell.to_dict(),
        outcome=Outcome(verdict, summary, signature, {"key_figure": figure}, evidence),
        versions=hostinfo.package_versions(), host=hostinfo.host_facts(), started_at=started,
        duration_s=round(time.time() - started, 3), rerun=rerun_command(plan, cell),
        lab_version=__version__)


def owns_broker(cell: Cell) -> bool:
    from lab import scenarios
    try:
        return bool(scenarios.get(cell.scenario).owns_broker)
    except KeyError:
        return False


def shared_namespaces(cells: list[Cell], kind: str, run_id: str, generation: int) -> list[str]:
    """The namespaces of the cells that will use the run's shared `kind` server as their broker
    (not n/a from the cell alone, not owning a broker of their own)."""
    from lab.services import BROKER_SERVER
    return [namespace_for(c, run_id, generation) for c in cells
            if BROKER_SERVER.get(c.broker) == kind and not owns_broker(c) and not static_na(c)]


def wants_spare_node(cell: Cell) -> bool:
    """The cell boots a RabbitMQ node of its own per attempt, which a spare can stand in for:
    a broker-fault cell on a local RabbitMQ that is not n/a from the cell alone."""
    from lab.services import BROKER_SERVER, choose_provider
    return (owns_broker(cell) and BROKER_SERVER.get(cell.broker) == "rabbitmq" and not static_na(cell)
            and choose_provider("rabbitmq") == "local")


def spread(cells: list[Cell], wanted: Callable[[Cell], bool], share: float = 0.6) -> list[Cell]:
    """`cells` with those for which `wanted(cell)` is true spread evenly over the first `share`
    (a fraction, 0-1) of the others (both orders kept, the first after one gap), so that one booter thread
    (lab.services.spares: ~5-8 s a node) keeps up with them instead of meeting them all at
    the start of a longest-first schedule (issue 15: 33 attempts within its first 2 minutes)."""
    picked = [c for c in cells if wanted(c)]
    others = [c for c in cells if not wanted(c)]
    if not picked or not others:
        return list(cells)
    gap = max(1, int(len(others) * share / len(picked)))
    out: list[Cell] = []
    for index, cell in enumerate(others):
        out.append(cell)
        if (index + 1) % gap == 0 and picked:
            out.append(picked.pop(0))
    return out + picked


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


def run_one(plan: dict, cell: Cell, run_dir: Path, hub: ServiceHub, token: str,
            generation: int = 1, python: str | None = None, lanes: dict | None = None) -> ResultRecord:
    """Provision, run `python -m lab.cellrun` (with the cell's set's interpreter), record."""
    started = time.time()
    cell_dir = run_dir / "cells" / cell.cell_id
    shutil.rmtree(cell_dir / "services", ignore_errors=True)  # an interrupted try's SQLite files
    cell_dir.mkdir(parents=True, exist_ok=True)
    namespace = namespace_for(cell, plan["run_id"], generation)
    reason = static_na(cell)
    if reason:  # n/a from the cell alone: nothing provisioned, no cell process (issue 15)
        record = error_record(plan, cell, reason, {}, started, Verdict.NA, None)
        record.environment = {"decided": "before provisioning (Scenario.not_for)", "set": set_of(plan, cell)}
        append_record(run_dir, record)
        return record
    try:
        services = hub.for_cell(cell.broker, cell.backend, cell_dir / "services", namespace,
                                provide_broker=not owns_broker(cell))
    except (ServiceError, OSError, ImportError) as exc:  # ImportError: e.g. testcontainers not installed
        record = error_record(plan, cell, f"broker/backend could not be provided: {exc!r}"[:300],
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
            "namespace": namespace, "generation": generation, "profile": profile,
            "services": services.describe(),
            "server_versions": {"broker_server": f"{services.broker.kind} {services.broker.version}",
                                "backend_server": f"{services.backend.kind} {services.backend.version}"},
            "rerun": rerun_command(plan, cell), "set": set_of(plan, cell), "lanes": lanes or {}}
    if SPARES is not None and wants_spare_node(cell):
        spec["spares_dir"] = SPARES.dir
        if not SPARES.has_ready():
            SPARES.forgo(1)  # its first attempt boots its own node
    spec_path = cell_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    cell_token = child_token(token, namespace)
    env = {**os.environ, OWNER_ENV: cell_token}
    python = python or sys.executable
    if python != sys.executable:  # the set's venv: its python, its scripts first on PATH
        venv = Path(python).parent.parent
        env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    bound = cell_estimate(cell) * 4 + CELL_SLACK_S
    out_path = cell_dir / "cellrun.log"
    proc = None
    try:
        server = SERVERS.get(python, env) if SERVERS is not None else None
        if server is not None:  # forked from the set's cell server (lab.cellserver)
            proc = server.launch(spec_path, out_path, cell_token)
        with open(out_path, "ab" if proc is not None else "wb") as out:
            if proc is None:  # SIGKILL with the runner: a cell whose runner is gone never appends a record
                proc = popen([python, "-m", "lab.cellrun", str(spec_path)], signal.SIGKILL,
                             stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
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
        if SPARES is not None:
            SPARES.release(cell_dir)  # the nodes it claimed: this runner's children, reaped here
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
              lanes: int | str | None = None, set_key: str | None = None,
              pythons: dict[str, str] | None = None) -> list[ResultRecord]:
    """Run the version's (or one dependency set's) unrecorded cells; returns the new
    records. With `pythons` ({set key: venv python}), run the cells of all those sets
    in one schedule, longest estimate first, each with its set's interpreter (the
    caller built the venvs). `lanes`: a number or "auto" (lab.lanes.LaneGate).
    Raises RunnerBusy (another runner has this run dir and version/set),
    FileNotFoundError (no plan), KeyboardInterrupt (Ctrl-C: finished records are kept)."""
    run_dir = Path(run_dir).resolve()
    plan = load_plan(run_dir)
    scope = ensure_scope(run_dir.parent.parent)  # reports/runs/<id> -> reports: what `lab cleanup` touches
    remove_stale_temp_dirs(scope=scope)  # temp dirs of this scope's runners that died (SIGKILL and watchdog)
    parent = owner_token()
    # a token of this runner's own (nested: the parent's sweeps still find it), so a resume's
    # sweep of a dead runner's token can only ever reach that runner's processes
    token = child_token(parent, f"runner-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    os.environ[OWNER_ENV] = token
    try:
        return _run_owned(run_dir, plan, celery, only, lanes, token, set_key, pythons)
    finally:
        os.environ[OWNER_ENV] = parent


def _run_owned(run_dir: Path, plan: dict, celery: str | None, only: list[str] | None,
               lanes: int | str | None, token: str, set_key: str | None,
               pythons: dict[str, str] | None) -> list[ResultRecord]:
    hold = claim(run_dir, set_key or celery or ("all" if pythons else None))
    try:
        if hold.swept:
            print(f"resume: stopped {len(hold.swept)} leftover process(es) of the interrupted runner: "
                  + "; ".join(hold.swept), flush=True)
        watchdog = Watchdog.start(token, resume_command(run_dir))
        try:
            return _run_claimed(run_dir, plan, celery, only, lanes, token, hold.generation, set_key, pythons)
        finally:
            watchdog.disarm()
    finally:
        hold.release()


def _run_claimed(run_dir: Path, plan: dict, celery: str | None, only: list[str] | None,
                 lanes: int | str | None, token: str, generation: int, set_key: str | None,
                 pythons: dict[str, str] | None) -> list[ResultRecord]:
    LANES.interrupted = False
    existing = list(read_records([run_dir]))
    done = {r.cell_id for r in existing}
    cells = [c for c in plan_cells(plan, celery, set_key) if c.cell_id not in done
             and (not only or c.cell_id in only) and (pythons is None or set_of(plan, c) in pythons)]
    order = {c.cell_id: i for i, c in enumerate(cells)}
    cells.sort(key=lambda c: (-cell_estimate(c), order[c.cell_id]))  # longest first: no idle lane at the end
    cells = spread(cells, wants_spare_node)  # the spare nodes' boots keep pace with their cells
    lanes = lanes or plan.get("lanes", 2)
    gate = LaneGate(None if lanes == "auto" else int(lanes), auto=lanes == "auto")
    total = len(plan["cells"]) if not only else len(cells) + len(existing)
    progress = Progress(total, existing, gate.limit, label=f"celery {celery or 'all'}",
                        estimates={c.cell_id: cell_estimate(c) for c in cells})
    what = f"{len(pythons)} dependency set(s)" if pythons else f"celery {celery}"
    print(f"{what}: {len(cells)} cell(s) to run in "
          f"{'up to ' + str(gate.limit) + ' lane(s) by load' if gate.auto else str(gate.limit) + ' lane(s)'}; "
          f"{len(existing)} already recorded in {run_dir}"
          + (f" (resume generation {generation})" if generation > 1 else ""), flush=True)
    results: list[ResultRecord] = []
    with Reaper() as reaper:
        tmp = owned_temp_dir("lab-services-")
        reaper.add(f"rm {tmp}", lambda: shutil.rmtree(tmp, ignore_errors=True))
        hub = ServiceHub(tmp)
        reaper.add("stop services", hub.close)
        hub.prepare_ahead("rabbitmq", shared_namespaces(cells, "rabbitmq", plan["run_id"], generation))
        speed = SpeedLog(run_dir / SPEED_FILE)  # how fast the host is, beside how busy (lab.hostspeed)
        reaper.add("stop host speed log", speed.close)
        reaper.add("sweep run processes", lambda: kill_owned(token))
        global SERVERS, SPARES
        SERVERS = CellServers(tmp) if os.environ.get("LAB_CELL_SERVER", "1") != "0" else None
        if SERVERS is not None:
            reaper.add("stop cell servers", SERVERS.close)
        wanted = sum(c.repeats for c in cells if wants_spare_node(c))
        SPARES = SpareNodes(tmp / "spares", wanted) if wanted and os.environ.get("LAB_SPARE_NODES", "1") != "0" \
            else None
        if SPARES is not None:
            reaper.add("stop spare nodes", SPARES.close)

        def lane(cell: Cell) -> ResultRecord:
            if static_na(cell):  # recorded without provisioning: no lane, no admission ramp
                record = run_one(plan, cell, run_dir, hub, token, generation)
                progress.update(record, 0.0)
                return record
            with gate.admit():
                t0 = time.monotonic()
                python = (pythons or {}).get(set_of(plan, cell))
                record = run_one(plan, cell, run_dir, hub, token, generation, python,
                                 {"running": gate.running, "load": round(gate.load, 2), **gate.describe(),
                                  "host_speed_s": speed.latest})
            progress.update(record, time.monotonic() - t0)
            return record

        reaper.add("stop lane sampler", gate.close)
        pool = ThreadPoolExecutor(max_workers=gate.limit, thread_name_prefix="lane")
        try:
            results = list(pool.map(lane, cells))
        except BaseException as exc:
            LANES.stop_all()
            what = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else f"failed ({exc!r})"
            print(f"{what}: stopping cell processes; finished cells are kept in "
                  f"{run_dir / 'results.jsonl'}\nresume: {resume_command(run_dir)}", flush=True)
            raise
        finally:
            pool.shutdown(wait=True, **({"cancel_futures": True} if sys.version_info >= (3, 9) else {}))  # 3.8 venvs
            progress.close()
    return results
