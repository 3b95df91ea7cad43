"""A repro bundle per cell: a small folder a maintainer runs without this lab.

Contract: `write_bundle(entry, out_dir) -> Path` writes `out_dir/<slug>/`
with README.md (what the cell observed, the rate commands), app.py (a Celery
app with the cell's settings and the lab's task shapes), worker.sh (the
worker command line the cell ran, made portable), trigger.py (sends the
workload, then replays the recorded faults — signals, kills — at their
recorded offsets against the worker's pids) and rate.sh (`lab triage` /
`lab bisect` commands that measure k/n in a lab checkout). Everything is
generated from the record alone (plus lab.catalog's profile settings); no
lab import is needed to run it. Broker URLs point at 127.0.0.1 defaults;
edit them for your setup. Each bundle is a few KB. Standard library only.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from lab import catalog

from lab.report.answer import settings_of
from lab.report.model import Entry, version_key
from lab.report.portable import portable_command

BROKER_URLS = {"redis": "redis://127.0.0.1:6379/0", "amqp": "amqp://guest:guest@127.0.0.1:5672//",
               "sql": "sqla+sqlite:///broker.sqlite", "sql-postgres": "sqla+postgresql://127.0.0.1/celery"}
BACKEND_URLS = {"redis": "redis://127.0.0.1:6379/1", "sqlite": "db+sqlite:///results.sqlite",
                "postgres": "db+postgresql://127.0.0.1/celery"}

APP = '''"""Celery app for this repro (generated from a lab record). Run: sh worker.sh"""
import os
import time

from celery import Celery

app = Celery("repro")
app.conf.update({settings})
app.conf.broker_url = os.environ.get("BROKER_URL", app.conf.broker_url)
app.conf.result_backend = os.environ.get("RESULT_BACKEND", app.conf.result_backend)


@app.task(bind=True, name="lab.member")
def member(self, index, seconds=0.0):
    print(f"member {{index}} start pid={{os.getpid()}} redelivered={{self.request.delivery_info.get('redelivered')}}",
          flush=True)
    time.sleep(seconds)
    return index


@app.task(name="lab.collect")
def collect(results):
    print(f"callback {{sorted(results)}}", flush=True)
    return sorted(results)


@app.task(name="lab.sleep")
def sleep(seconds, key="sleep"):
    time.sleep(seconds)
    return key
'''

TRIGGER = '''"""Send the workload, then replay the faults the lab recorded (generated from a lab record).

Usage: python trigger.py MASTER_PID     (the pid worker.sh printed / `pgrep -f 'celery -A app'`)
"""
import os
import signal
import sys
import time

from celery import chord, group

from app import app, collect, member, sleep

FAULTS = {faults}   # (seconds after the workload was sent, signal, target) as recorded

master = int(sys.argv[1]) if len(sys.argv) > 1 else None
started = time.monotonic()
{workload}
for offset, name, target in FAULTS:
    time.sleep(max(0.0, started + offset - time.monotonic()))
    if master is None:
        print(f"t+{{offset:.1f}}s: would send {{name}} to {{target}} (pass the master pid)", flush=True)
        continue
    sig = getattr(signal, name, signal.SIGTERM)
    if target == "group":
        os.killpg(os.getpgid(master), sig)
    else:
        os.kill(master, sig)
    print(f"t+{{offset:.1f}}s: sent {{name}} to {{target}}", flush=True)
try:
    print("result:", result.get(timeout={window}), "after", round(time.monotonic() - started, 1), "s")
except Exception as exc:  # noqa: BLE001 - the repro reports what happened
    print("no result within {window} s:", type(exc).__name__, exc)
'''


def _settings(entry: Entry) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "broker_url": BROKER_URLS.get(entry.axis("broker"), "memory://"),
        "result_backend": BACKEND_URLS.get(catalog.resolve_backend(entry.axis("backend") or "auto",
                                                                     entry.axis("broker"))
                                           if entry.axis("broker") in BROKER_URLS else "", None),
        "task_track_started": True,
    }
    settings.update((catalog.PROFILES.get(entry.axis("profile")) or {}).get("settings") or {})
    vt = entry.record.outcome.metrics.get("visibility_timeout_s")
    if vt and entry.axis("broker") == "redis":
        settings["broker_transport_options"] = {"visibility_timeout": vt}
    return settings


def _worker_argv(entry: Entry) -> list[str]:
    workers = (entry.record.environment or {}).get("workers") or []
    argv = list(workers[0].get("argv") or []) if workers and isinstance(workers[0], dict) else []
    if "celery" in argv:
        argv = argv[argv.index("celery"):]
    else:
        argv = ["celery", "-A", "app", "worker", "-P", entry.axis("pool") or "prefork", "-l", "INFO"]
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "-A":
            out += ["-A", "app"]
            skip = True
        elif arg in ("-n", "-Q"):
            skip = True
        else:
            out.append(portable_command(arg))
    return out


def _faults(entry: Entry) -> list[tuple[float, str, str]]:
    faults = [f for f in entry.record.faults or [] if isinstance(f, dict) and isinstance(f.get("mono"), (int, float))]
    starts = [f["mono"] for f in faults if f.get("kind") == "start"]
    t0 = min(starts) if starts else (min((f["mono"] for f in faults), default=0.0))
    out = [(round(f["mono"] - t0, 2), str(f.get("signal")), str(f.get("target") or "master"))
           for f in faults if f.get("kind") in ("signal", "kill") and f.get("signal")]
    for event in entry.record.journal or []:   # signals a hook sent from inside the master
        if isinstance(event, dict) and event.get("event") == "race_inject" and isinstance(event.get("mono"), (int, float)):
            name = str(event.get("signal") or "")
            out.append((round(event["mono"] - t0, 2), name if name.startswith("SIG") else f"SIG{name}", "master"))
    return sorted(out)


def _hooked(entry: Entry) -> list[str]:
    return sorted({str(e.get("point")) for e in entry.record.journal or []
                   if isinstance(e, dict) and e.get("event") == "race_inject"})


def rate_commands(entry: Entry, versions: list[str]) -> list[str]:
    """`lab triage` for the cell's exact slice (k/n over 20 attempts), plus `lab bisect` between the
    oldest tested release and this one when the cell has a failure signature."""
    base = (f"lab triage {entry.axis('scenario')} --celery {entry.axis('celery')} --pool {entry.axis('pool')} "
            f"--broker {entry.axis('broker')} --backend {entry.axis('backend') or 'auto'} "
            f"--profile {entry.axis('profile')} --mode {entry.axis('mode')}{entry.axis_flags} -n 20")
    out = [base]
    signature = entry.record.outcome.signature
    older = [v for v in versions if version_key(v) < version_key(entry.axis("celery"))]
    if signature and entry.verdict.value not in ("pass", "n/a", "error"):
        good = older[0] if older else "<older release>"
        out.append(f"lab bisect {entry.axis('scenario')} --good {good} --bad {entry.axis('celery')} "
                   f"--pool {entry.axis('pool')} --broker {entry.axis('broker')} --profile {entry.axis('profile')} "
                   f"--mode {entry.axis('mode')}{entry.axis_flags} --signature {shlex.quote(signature)} -n 20")
    return out


def write_bundle(entry: Entry, out_dir: Path, versions: list[str] | None = None) -> Path:
    """Write the bundle of one cell (see the module contract); return its folder."""
    folder = Path(out_dir) / entry.slug
    folder.mkdir(parents=True, exist_ok=True)
    record, outcome = entry.record, entry.record.outcome
    metrics = outcome.metrics
    long_s = 10.0 if entry.axis("scenario") == "eviction" else 3.0
    window = int(metrics.get("window_s") or metrics.get("budget_s") or 60)
    argv = _worker_argv(entry)
    settings = _settings(entry)
    files = {
        "app.py": APP.format(settings=json.dumps(settings, indent=4, sort_keys=True).replace(
            "true", "True").replace("false", "False").replace("null", "None")),
        "worker.sh": "#!/bin/sh\n# the worker command line the cell ran (pool, concurrency, flags), portable\n"
                     + 'cd "$(dirname "$0")"\n'
                     + "".join(f"export {e}\n" for kind, e in settings_of(entry.axis("profile")) if kind == "env")
                     + f"# once: pip install 'celery=={entry.axis('celery')}' plus the broker's client (redis, sqlalchemy...)\n"
                     + " ".join(shlex.quote(a) for a in argv) + " &\necho \"worker master pid $!\"\nwait\n",
        "trigger.py": TRIGGER.format(faults=repr(_faults(entry)), window=window, workload=(
            "result = group(sleep.s(0.01, f'flood-{i}') for i in range(400)).apply_async()  # keeps children "
            "being replaced (--max-tasks-per-child=1)\nprint('flood sent', flush=True)"
            if entry.axis("scenario") == "shutdown-race" else
            f"result = chord([member.s(i, {long_s} if i == 0 else 0.2) for i in range(3)])(collect.s())\n"
            "print('chord sent', result.id, flush=True)")),
        "rate.sh": "#!/bin/sh\n# measure the rate (k/n, Wilson interval) from a lab checkout's root\n"
                   + "\n".join(rate_commands(entry, versions or [])) + "\n",
    }
    setting_lines = "\n".join(f"- {kind}: `{text}`" for kind, text in settings_of(entry.axis("profile")))
    files["README.md"] = (
        f"# Repro: {record.cell_id}\n\n"
        f"Observed by the lab: **{outcome.verdict.value}**"
        + (f" (`{outcome.signature}`)" if outcome.signature else "") + f" — {outcome.summary}\n\n"
        f"Celery {entry.axis('celery')}, pool {entry.axis('pool')}, broker {entry.axis('broker')}, "
        f"profile `{entry.axis('profile')}`, mode `{entry.axis('mode')}`. Resolved versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(record.versions.items()) if v) + ".\n\n"
        f"## What the profile applies\n\n{setting_lines}\n\n"
        "## Run it\n\n1. Start a broker on 127.0.0.1 (or set BROKER_URL / RESULT_BACKEND).\n"
        "2. `sh worker.sh` (prints the master pid).\n3. `python trigger.py <master pid>`: sends a chord of three "
        "(one long member) and replays the recorded signals at their recorded offsets.\n\n"
        + (f"The lab sent the signal from *inside* the master at pool point(s) {', '.join(_hooked(entry))} "
           "(a worker_before_create_process hook, lab/app/race_hooks.py); trigger.py sends it from outside "
           "at the recorded offset, which only approximates that timing: use rate.sh for the real rate.\n\n"
           if _hooked(entry) else "")
        + "The lab's scenario also starts a replacement worker, snapshots the broker and judges from a task "
        "ledger; this bundle only reproduces the shape. To measure the rate in a lab checkout:\n\n"
        "```sh\n" + "\n".join(rate_commands(entry, versions or [])) + "\n```\n")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
