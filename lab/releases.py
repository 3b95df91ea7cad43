"""Is each Celery version a matrix names a real release? Checked before a run dir exists.

Contract: `check_releases(versions, cache_dir, file)` returns a one-line note
on where the answer came from, or raises MatrixError(file, "matrix.celery[i]",
...) for the first version that is not a release. Versions already in the
cached list (<reports>/.cache/celery-releases.json) need no network; else the
package index is asked (`pip index versions celery`, through this
interpreter's pip, the base interpreter's, or pip on PATH: a uv-made venv has
none) and the cache refreshed. When the index cannot be reached, the cache
answers, and a version missing from it is refused with both reasons.
LAB_CELERY_RELEASES (comma-separated) replaces the index (air-gapped
machines, tests). Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from lab.matrix import MatrixError

CACHE_FILE = "celery-releases.json"
RELEASES_ENV = "LAB_CELERY_RELEASES"
INDEX_TIMEOUT_S = 60.0


class IndexUnreachable(RuntimeError):
    """The package index could not be asked (offline, no pip, timeout)."""


def _pips() -> list[list[str]]:
    found = [[sys.executable, "-m", "pip"]]
    base = getattr(sys, "_base_executable", "")
    if base and base != sys.executable:
        found.append([base, "-m", "pip"])
    for name in ("pip3", "pip"):
        if shutil.which(name):
            found.append([shutil.which(name)])
    return found


def index_releases(timeout: float = INDEX_TIMEOUT_S) -> list[str]:
    """Celery's releases on the configured package index; raises IndexUnreachable."""
    problems = []
    for pip in _pips():
        try:
            out = subprocess.run([*pip, "index", "versions", "celery"], capture_output=True, text=True,
                                 timeout=timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{' '.join(pip)}: {exc}")
            continue
        found = re.search(r"Available versions: (.*)", out.stdout)
        if found:
            return [v.strip() for v in found.group(1).split(",") if v.strip()]
        problems.append(f"{' '.join(pip)}: {(out.stderr or out.stdout).strip().splitlines()[-1:] or ['no output']}")
    raise IndexUnreachable("; ".join(problems))


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def check_releases(versions: list[str], cache_dir: Path, file: str,
                   fetch: Callable[[], list[str]] = index_releases,
                   file_order: list[str] | None = None) -> str:
    """Refuse (MatrixError) a version that is not a Celery release; returns a note.
    Fields are named by the index in `file_order` (the file's matrix.celery) when given."""
    order = {v: i for i, v in enumerate(file_order or versions)}
    if os.environ.get(RELEASES_ENV):
        known, source = set(os.environ[RELEASES_ENV].split(",")), f"{RELEASES_ENV}"
        _refuse(versions, known, file, source, order)
        return f"celery versions checked against {source}"
    cache_path = Path(cache_dir) / CACHE_FILE
    cache = _read_cache(cache_path)
    cached = set(cache.get("versions", []))
    if cached and all(v in cached for v in versions):
        return f"celery versions checked against the cached release list ({cache_path})"
    try:
        listed = fetch()
    except IndexUnreachable as exc:
        if not cached:
            raise MatrixError(file, "matrix.celery", "cannot check the versions: the package index could "
                              f"not be reached ({exc}) and there is no cached list at {cache_path}; "
                              f"connect, or set {RELEASES_ENV}=5.6.2,... to name the releases") from None
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(cache.get("fetched_at", 0)))
        _refuse(versions, cached, file, f"the cached list from {when} (the package index could not be "
                                        f"reached: {exc})", order)
        return f"celery versions checked against the cached list from {when} (index unreachable)"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fetched_at": time.time(), "versions": listed}))
    os.replace(tmp, cache_path)
    _refuse(versions, set(listed), file, "the package index (checked now)", order)
    return "celery versions checked against the package index"


def _refuse(versions: list[str], known: set[str], file: str, source: str, order: dict) -> None:
    for version in versions:
        if version not in known:
            index = order.get(version, versions.index(version))
            near = sorted((v for v in known if v.split(".")[:1] == version.split(".")[:1]),
                          key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")])[-5:]
            raise MatrixError(file, f"matrix.celery[{index}]",
                              f"celery {version} is not a release according to {source}",
                              near or None)
