"""Facts about the host and the environment a cell ran in.

Contract: read-only probes, each bounded and never raising: the state of
/dev/shm, whether a private mount namespace can be made, cores and load, and
the resolved versions of every package a cell's behaviour depends on (read
from the running venv's metadata, never inferred).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import tempfile
from importlib import metadata

PACKAGES = {"celery": "celery", "kombu": "kombu", "billiard": "billiard", "redis": "redis",
            "sqlalchemy": "SQLAlchemy", "gevent": "gevent", "eventlet": "eventlet",
            "amqp": "amqp", "psycopg2": "psycopg2-binary", "vine": "vine", "click": "click",
            "packaging": "packaging"}  # packaging: kombu 5.7's Redis transport imports it


def shm_status(path: str = "/dev/shm") -> str:
    """'writable', 'read-only' or 'missing' (by trying, not by reading flags)."""
    if not os.path.isdir(path):
        return "missing"
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix="lab-probe-"):
            return "writable"
    except OSError:
        return "read-only"


def unshare_probe(flags: list[str], command: list[str], what: str) -> tuple[bool, str]:
    """(possible, reason): does `unshare FLAGS COMMAND` work on this host?"""
    try:
        proc = subprocess.run(["unshare", *flags, *command], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return False, "unshare(1) is not installed (util-linux)"
    except subprocess.TimeoutExpired:
        return False, f"unshare {what} probe timed out"
    if proc.returncode != 0:
        return False, f"unshare {what} failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    return True, "ok"


@functools.lru_cache(maxsize=1)
def private_mount_namespace() -> tuple[bool, str]:
    """(possible, reason): can we run a command with its own tmpfs /dev/shm?"""
    return unshare_probe(["--mount", "--propagation", "private"],
                         ["sh", "-c", "mount -t tmpfs -o size=1m lab-probe /dev/shm && touch /dev/shm/x"],
                         "--mount")


def package_versions() -> dict[str, str]:
    versions = {}
    for key, dist in PACKAGES.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def host_facts() -> dict:
    try:
        load1, load5, _ = os.getloadavg()
    except OSError:
        load1 = load5 = -1.0
    return {"cores": os.cpu_count(), "load1": round(load1, 2), "load5": round(load5, 2),
            "platform": platform.platform(), "shm": shm_status(),
            "uid": os.getuid(), "python": platform.python_version()}
