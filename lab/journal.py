"""The append-only event journal a cell's worker processes write.

Contract: `write_event` appends one JSON object per line with a single
O_APPEND write, so the master and forked pool children can share the file
without interleaving; every event carries pid, ppid, monotonic time
(CLOCK_MONOTONIC, comparable across processes on one host) and wall time,
and `worker_id` (LAB_WORKER_ID) when the writer is a lab worker, so a
worker that forks away from its launcher (--detach) is still told apart.
`read_journal` tolerates a torn last line. Standard library only: the app
under test imports it inside every Celery version's venv.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

JOURNAL_ENV = "LAB_JOURNAL"


def write_event(event: str, path: str | os.PathLike | None = None, **fields: Any) -> None:
    path = path or os.environ.get(JOURNAL_ENV)
    if not path:
        return
    record = {"event": event, "pid": os.getpid(), "ppid": os.getppid(),
              "mono": time.monotonic(), "wall": time.time()}
    worker_id = os.environ.get("LAB_WORKER_ID")
    if worker_id:
        record["worker_id"] = worker_id
    record.update(fields)
    line = (json.dumps(record, default=repr) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


_CACHE: dict[str, tuple[int, int, list]] = {}  # path -> (inode, bytes parsed, events)


def read_journal(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every event in the journal so far (a new list; the event dicts are shared, read-only).

    Incremental: only the bytes appended since the last call are parsed (the lab polls the
    journal every 0.05-0.1 s; re-parsing it whole cost CPU that slows every cell beside it).
    A line not yet ended by a newline is left for the next call; a complete line that is not
    JSON (a process killed mid-write, then another's line) is skipped. A file replaced or
    truncated is read again from the start."""
    key = os.fspath(path)
    try:
        fd = os.open(key, os.O_RDONLY)
    except FileNotFoundError:
        _CACHE.pop(key, None)
        return []
    try:
        st = os.fstat(fd)
        inode, offset, events = _CACHE.get(key, (st.st_ino, 0, []))
        if inode != st.st_ino or st.st_size < offset:
            inode, offset, events = st.st_ino, 0, []
        if st.st_size > offset:
            os.lseek(fd, offset, os.SEEK_SET)
            data = b""
            while True:
                chunk = os.read(fd, max(65536, st.st_size - offset - len(data)))
                if not chunk:
                    break
                data += chunk
            end = data.rfind(b"\n") + 1
            for line in data[:end].decode(errors="replace").splitlines():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn line from a process killed mid-write
            offset += end
        _CACHE[key] = (inode, offset, events)
        return list(events)
    finally:
        os.close(fd)


def select(events: list[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == event
            and all(e.get(k) == v for k, v in match.items())]
