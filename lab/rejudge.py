"""`lab rejudge RUN_DIR`: run the checkers again over the observations a run recorded.

Contract. A judge is a pure function of its observations (lab.scenarios.base),
and every attempt writes its observations to
cells/<cell-id>/attempt-N/observations.json, so a fixed checker can be applied
to an old history without running a worker again (as Jepsen re-checks a
history). `rejudge(run_dir, only)` judges every attempt of every record again
with the scenario's current `judge`, aggregates (lab.verdict.aggregate) and
rewrites results.jsonl atomically. A record is kept exactly as it was when
any of its attempts has no observations (n/a, setup failure, lab error, or a
run dir whose cell folders were not kept). A rejudged record says so:
`environment.rejudged = {"at", "lab_version", "was": old verdict/signature}`.
A judge that raises leaves that record as it was and is reported. Returns
(rejudged, changed, kept) counts. Raises FileNotFoundError without records.
Run it in an environment whose scenario modules import (a Celery venv).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from lab import __version__, scenarios
from lab.results import RESULTS_FILE, read_records
from lab.verdict import aggregate


def rejudge(run_dir: Path, only: list[str] | None = None,
            log: Callable[[str], None] = print) -> tuple[int, int, int]:
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no records to judge again")
    records = list(read_records([run_dir]))
    rejudged = changed = kept = 0
    for record in records:
        if only and record.cell_id not in only:
            continue
        attempts = sorted((run_dir / "cells" / record.cell_id).glob("attempt-*/observations.json"),
                          key=lambda p: int(p.parent.name.split("-")[1]))
        expected = int(record.outcome.metrics.get("attempts") or 1)
        if not record.outcome.verdict.ran or len(attempts) != expected:
            kept += 1
            continue
        scenario = scenarios.get(record.cell["scenario"])
        try:
            outcome = aggregate([scenario.judge(json.loads(p.read_text())) for p in attempts])
        except Exception:
            log(f"{record.cell_id}: the checker raised; record kept\n{traceback.format_exc(limit=3)}")
            kept += 1
            continue
        for key in ("attempt_records", "waits", "inherent_s"):  # what the run recorded beside the judge's metrics
            if key in record.outcome.metrics:
                outcome.metrics[key] = record.outcome.metrics[key]
        was = {"verdict": record.outcome.verdict.value, "signature": record.outcome.signature}
        if (outcome.verdict, outcome.signature, outcome.finding_keys()) != (
                record.outcome.verdict, record.outcome.signature, record.outcome.finding_keys()):
            changed += 1
            log(f"{record.cell_id}: {was['verdict']} {was['signature'] or ''} -> "
                f"{outcome.verdict.value} {outcome.signature or ''}")
        record.outcome = outcome
        record.environment = {**record.environment, "rejudged": {
            "at": time.time(), "lab_version": __version__, "was": was}}
        rejudged += 1
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as out:
        for record in records:
            out.write(json.dumps(record.to_dict(), sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return rejudged, changed, kept
