"""One cell, in a process of its own: `python -m lab.cellrun <spec.json>`, or forked by the set's
cell server (lab.cellserver), which calls `main([spec])` the same way.

Contract: reads a CellSpec written by the runner (cell, service URLs,
profile, paths), runs the scenario's attempts — each with a fresh worker,
its own queue and journal —, judges each, aggregates, and appends exactly
one ResultRecord to the run's results.jsonl. A scenario or checker that
raises yields verdict `error` with the traceback (the lab failed, not
Celery); an ImportError from outside the lab (a transport's dependency)
yields `setup-failed`: the scenario never ran. A host that cannot run the configuration yields `n/a` with the
reason. Workers are torn down after every attempt, also on Ctrl-C. Every
record carries `metrics.waits`/`inherent_s` (lab.waits) and `cpu_s`; the
transport probe runs once per set and URL schemes (`cached_probe`); the
process never collects reference cycles (celery#10477, see `main`).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lab import __version__, hostinfo, scenarios
from lab.matrix import Cell
from lab.reaper import REAPER
from lab.results import RECORD_FILE, ResultRecord, append_record, write_json
from lab.scenarios.base import CellContext
from lab.sides import setup_failed_outcome, transport_probe
from lab.verdict import Outcome, Verdict, aggregate
from lab.waits import WAITS
from lab.worker import WorkerCannotRun

MAX_JOURNAL_EVENTS = 3000


def profile_env(profile: dict[str, Any]) -> dict[str, str]:
    env = {k: str(v) for k, v in (profile.get("env") or {}).items()}
    if profile.get("settings"):
        env["LAB_CELERY_SETTINGS"] = json.dumps(profile["settings"])
    return env


def unknown_settings_reason(profile: dict[str, Any]) -> str | None:
    """n/a when the installed Celery does not know a setting the profile sets
    (feature detection on celery.app.defaults, never a version comparison)."""
    if not profile.get("settings"):
        return None
    from celery.app.defaults import DEFAULTS

    unknown = sorted(name for name in (profile.get("settings") or {}) if name not in DEFAULTS)
    if unknown:
        import celery
        return (f"celery {celery.__version__} has no setting {', '.join(unknown)} "
                f"(profile needs it)")
    return None


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this cell process and of its reaped children (its workers,
    their pool children, helpers): what a cell costs the host, for lane sizing (bench/)."""
    import resource
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cell": round(own.ru_utime + own.ru_stime, 3), "children": round(kids.ru_utime + kids.ru_stime, 3)}


def cached_probe(spec: dict) -> str | None:
    """lab.sides.transport_probe, once per run for each dependency set and pair of URL schemes:
    a success is kept in <run dir>/probes/ so later cells of that set skip the import (~0.5 s of
    CPU before the worker could start); a failure is probed again by every cell."""
    import hashlib

    broker, backend = spec["broker_url"], spec.get("backend_url", "")
    key = "|".join([spec.get("set") or sys.executable, broker.split(":", 1)[0], backend.split(":", 1)[0]])
    mark = Path(spec["run_dir"]) / "probes" / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".ok")
    if mark.exists():  # (importing Celery in a thread meanwhile breaks its lazy module: not done)
        return None
    problem = transport_probe(broker, backend)
    if problem is None:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(key + "\n")
    return problem


def setup_failure(summary: str, detail: str) -> Outcome:
    """The scenario never ran: the installed packages could not be imported."""
    return Outcome(Verdict.SETUP_FAILED, summary[:300], "setup:import",
                   {"key_figure": "setup failed"}, {"traceback": detail[-4000:]})


def run_attempt(scenario, cell: Cell, spec: dict, attempt: int, cell_dir: Path) -> tuple[Outcome, CellContext]:
    workdir = cell_dir / f"attempt-{attempt}"
    shutil.rmtree(workdir, ignore_errors=True)  # a rerun in the same run dir never reads old logs
    workdir.mkdir(parents=True)
    queue = f"lab.{spec['namespace']}.a{attempt}"
    env = {"LAB_BROKER_URL": spec["broker_url"], "LAB_RESULT_BACKEND": spec["backend_url"],
           "LAB_QUEUE": queue, **profile_env(spec.get("profile") or {})}
    ctx = CellContext(cell=cell, attempt=attempt, workdir=workdir, queue=queue, worker_env=env,
                      profile=spec.get("profile") or {}, seed=cell.seed * 100003 + attempt,
                      spares_dir=spec.get("spares_dir"))
    try:
        reason = scenario.not_for(cell) or unknown_settings_reason(ctx.profile) or scenario.applies(ctx)
        if reason:
            return Outcome(Verdict.NA, reason, metrics={"key_figure": "n/a"}), ctx
        obs = scenario.run(ctx)
    except WorkerCannotRun as exc:
        return Outcome(Verdict.NA, f"host cannot run this cell: {exc}", "host-condition"), ctx
    except ImportError as exc:
        if not str(getattr(exc, "name", "") or "").startswith("lab"):  # the environment, not the lab
            return setup_failure(f"import failed in the client: {exc}", traceback.format_exc()), ctx
        return Outcome(Verdict.ERROR, "the lab failed while running the scenario", "lab-error",
                       evidence={"traceback": traceback.format_exc()}), ctx
    except Exception:
        return Outcome(Verdict.ERROR, "the lab failed while running the scenario", "lab-error",
                       evidence={"traceback": traceback.format_exc()}), ctx
    finally:
        leftovers = ctx.teardown()
        if leftovers:
            ctx.notes.append(f"teardown killed {len(leftovers)} process(es): {leftovers}")
    (workdir / "observations.json").write_text(json.dumps(obs, indent=2, default=str))
    try:
        return scenario.judge(obs), ctx
    except Exception:
        return Outcome(Verdict.ERROR, "the lab's checker failed", "lab-error",
                       evidence={"traceback": traceback.format_exc()}), ctx


def run_cell(spec: dict) -> ResultRecord:
    cell = Cell.from_dict(spec["cell"])
    run_dir = Path(spec["run_dir"])
    cell_dir = run_dir / "cells" / cell.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    scenario = scenarios.get(cell.scenario)
    started, t0 = time.time(), time.monotonic()
    WAITS.reset()
    outcomes, last_ctx, attempts, ready = [], None, [], []
    problem = cached_probe(spec)
    for attempt in range(1, cell.repeats + 1 if not problem else 1):
        outcome, last_ctx = run_attempt(scenario, cell, spec, attempt, cell_dir)
        outcomes.append(outcome)
        events = last_ctx.events()
        ready.append(any(e.get("event") == "worker_ready" for e in events))
        if cell.repeats > 1:   # every attempt's timeline, so the report can draw each (issue 14)
            attempts.append({"attempt": attempt, "verdict": outcome.verdict.value, "signature": outcome.signature,
                             "journal": events[:MAX_JOURNAL_EVENTS // cell.repeats],
                             "faults": last_ctx.faults()})
        if not outcome.verdict.ran:  # n/a, setup-failed, error: further attempts would say the same
            break
    final = aggregate(outcomes) if not problem else setup_failed_outcome(
        f"the scenario never ran: {problem}"[:300], {"import_error": problem})
    if len(attempts) > 1:
        final.metrics["attempt_records"] = attempts
    waits = WAITS.summary()  # seconds per kind of wait, all attempts (lab.waits)
    final.metrics["waits"] = waits
    final.metrics["inherent_s"] = waits["inherent"]
    final.metrics["cpu_s"] = cpu_seconds()
    notes = last_ctx.notes if last_ctx else []
    logs = {}
    if last_ctx:
        for worker in last_ctx.workers:
            logs[worker.name] = str(worker.log_path.relative_to(run_dir))
        logs["journal"] = str(last_ctx.journal.relative_to(run_dir))
    environment = {"services": spec.get("services", {}), "notes": notes, "lanes": spec.get("lanes", {}), "attempts_ready": ready,
                   "set": spec.get("set", ""),
                   "workers": [w.environment for w in (last_ctx.workers if last_ctx else [])]}
    return ResultRecord(
        run_id=spec["run_id"], cell_id=cell.cell_id, cell=cell.to_dict(), outcome=final,
        versions={**hostinfo.package_versions(), **spec.get("server_versions", {})},
        host=hostinfo.host_facts(), environment=environment, started_at=started,
        duration_s=round(time.monotonic() - t0, 3), logs=logs,
        journal=(last_ctx.events()[:MAX_JOURNAL_EVENTS] if last_ctx else []),
        faults=(last_ctx.faults() if last_ctx else []), seed=cell.seed,
        rerun=spec.get("rerun", ""), lab_version=__version__,
    )


def main(argv: list[str] | None = None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(argv[0]).read_text())
    REAPER.install()  # SIGTERM/SIGHUP from the runner unwind through teardown
    # The lab's client holds Celery AsyncResults; a cyclic collection that finalises one inside a
    # redis-py call re-enters PubSub._lock and hangs the client for good (celery#10477, fixed by
    # celery PR #10497; seen here on 5.3.6: a chord-stall cell's client stuck in unsubscribe). A cell
    # process is short-lived, so it simply never collects cycles; refcounting still frees the rest.
    gc.disable()
    record = run_cell(spec)
    append_record(Path(spec["run_dir"]), record)
    # the runner reads this one file back (O(1) per cell), never the whole results.jsonl
    write_json(Path(spec["run_dir"]) / "cells" / record.cell_id / RECORD_FILE, record.to_dict())
    print(json.dumps({"cell_id": record.cell_id, "verdict": record.outcome.verdict.value,
                      "summary": record.outcome.summary}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
