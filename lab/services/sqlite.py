"""SQLite as a broker (kombu's SQLAlchemy transport) and as a result backend.

Contract: no server process; each (namespace, role) is its own database file under
the cell's workdir, so cells never share tables. `stop()` is a no-op (the
files go with the cell's directory).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lab.services.base import Service

SCHEMES = {"broker": "sqla+sqlite", "backend": "db+sqlite"}


class SQLiteFiles(Service):
    def __init__(self, workdir: Path):
        super().__init__(kind="sqlite", provider="embedded", workdir=workdir,
                         version=sqlite3.sqlite_version)

    def start(self) -> "SQLiteFiles":
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def stop(self) -> None:
        pass

    def restart(self) -> None:
        pass

    def url_for(self, namespace: str, role: str = "broker") -> str:
        path = (self.workdir / f"{namespace}-{role}.sqlite").resolve()
        return f"{SCHEMES[role]}:///{path}"
