"""Result records: one JSON line per cell under reports/runs/<run-id>/.

Contract: a ResultRecord round-trips through JSON unchanged
(`ResultRecord.from_dict(r.to_dict()) == r`). Records are appended one line at
a time with O_APPEND and fsync, so an interrupted run keeps every cell it
finished and shards written by concurrent sessions never interleave.
Standard library only.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from lab.verdict import Outcome

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
PLAN_FILE = "plan.json"
RECORD_FILE = "record.json"  # cells/<cell-id>/record.json: the last record a cell process wrote


@dataclass
class ResultRecord:
    run_id: str
    cell_id: str
    cell: dict[str, Any]
    outcome: Outcome
    versions: dict[str, str] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    duration_s: float = 0.0
    logs: dict[str, str] = field(default_factory=dict)
    journal: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    seed: int | None = None
    rerun: str = ""
    lab_version: str = ""
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["outcome"] = self.outcome.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ResultRecord":
        fields = dict(data)
        fields["outcome"] = Outcome.from_dict(fields["outcome"])
        known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def create_run_dir(reports_root: Path, run_id: str, point_latest: bool = True) -> Path:
    """Make reports/runs/<run-id>/ and return it; point reports/latest at it unless not
    `point_latest` (a triage or bisect run builds no HTML report, so `latest` keeps showing
    the last matrix run's). Raises OSError when the directory cannot be made."""
    run_dir = reports_root / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if not point_latest:
        return run_dir
    latest = reports_root / "latest"
    tmp = reports_root / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path("runs") / run_id)
    os.replace(tmp, latest)
    return run_dir


def append_record(run_dir: Path, record: ResultRecord) -> None:
    line = (json.dumps(record.to_dict(), sort_keys=True, default=str) + "\n").encode()
    fd = os.open(run_dir / RESULTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(paths: Iterable[Path]) -> Iterator[ResultRecord]:
    """Read records from results.jsonl files (or run dirs holding one).

    A torn last line (the run was killed mid-write) is skipped, not fatal.
    """
    for path in paths:
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield ResultRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                print(f"warning: {path}:{number}: unreadable record skipped ({exc})")


def done_cell_ids(run_dir: Path) -> set[str]:
    return {r.cell_id for r in read_records([run_dir])}


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
