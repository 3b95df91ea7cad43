"""Released versions of a package, from the package index, cached and ordered.

Contract: `list_versions(name)` asks the index through its ordinary client
(`pip index versions NAME`; pip from this interpreter, else pip3/pip on
PATH) and caches the answer for a day in $LAB_CACHE_DIR (default
~/.cache/celery-lifecycle-lab/index-NAME.json); raises MatrixError saying
so when no client answers. `between(versions, good, bad)` keeps final
releases (no pre-, dev- or post-releases) from good to bad inclusive,
oldest first, ordered by packaging.version (PEP 440), with a plain numeric
fallback when packaging is not importable.
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
from typing import List, Optional

from lab.matrix import MatrixError

CACHE_TTL_S = 24 * 3600


def _version_cls():
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - pip vendors it
        try:
            from pip._vendor.packaging.version import InvalidVersion, Version
        except ImportError:
            return None, None
    return Version, InvalidVersion


def version_key(text: str):
    """A sort key for a version string (PEP 440 where packaging is available)."""
    version, invalid = _version_cls()
    if version is not None:
        try:
            return (0, version(text))
        except invalid:
            return (1, text)
    return (0, tuple(int(p) for p in re.findall(r"\d+", text)))


def is_final(text: str) -> bool:
    version, invalid = _version_cls()
    if version is None:
        return bool(re.fullmatch(r"\d+(\.\d+)*", text))
    try:
        parsed = version(text)
    except invalid:
        return False
    return not (parsed.is_prerelease or parsed.is_devrelease or parsed.is_postrelease or parsed.local)


def between(versions: List[str], good: str, bad: str) -> List[str]:
    low, high = sorted((good, bad), key=version_key)
    finals = {v.strip() for v in versions if v.strip() and is_final(v.strip())}
    return sorted((v for v in finals if version_key(low) <= version_key(v) <= version_key(high)),
                  key=version_key)


def _cache_path(name: str) -> Path:
    root = Path(os.environ.get("LAB_CACHE_DIR") or Path.home() / ".cache" / "celery-lifecycle-lab")
    return root / f"index-{re.sub(r'[^A-Za-z0-9._-]', '_', name.lower())}.json"


def _ask_index(name: str) -> Optional[List[str]]:
    clients = [[sys.executable, "-m", "pip"]] + [[p] for p in filter(None, (shutil.which("pip3"),
                                                                              shutil.which("pip")))]
    for client in clients:
        try:
            out = subprocess.run([*client, "index", "versions", name], capture_output=True, text=True,
                                 timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        found = re.search(r"Available versions: (.*)", out.stdout)
        if found:
            return [v.strip() for v in found.group(1).split(",")]
    return None


def list_versions(name: str, refresh: bool = False) -> List[str]:
    """Every version of `name` the index lists (cached a day); raises MatrixError when none can be read."""
    path = _cache_path(name)
    if not refresh:
        try:
            cached = json.loads(path.read_text())
            if time.time() - cached["at"] < CACHE_TTL_S and cached["versions"]:
                return list(cached["versions"])
        except (OSError, ValueError, KeyError):
            pass
    versions = _ask_index(name)
    if not versions:
        raise MatrixError("(bisect)", "--versions", f"could not list {name} releases from the package index "
                          "(pip index versions); pass --versions")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"at": time.time(), "versions": versions}))
    return versions
