"""Find a Python interpreter on this machine for a matrix's `python` axis.

Contract: `find_python("3.9")` returns (path, "3.9.18") of an interpreter
whose major.minor is the one asked for, or raises InterpreterMissing saying
where it looked. "default" is the interpreter the lab runs on. Searched, in
order: $LAB_PYTHON_<MAJOR>_<MINOR> (an explicit path), pyenv's versions
($PYENV_ROOT, else ~/.pyenv), `uv python find`, then pythonX.Y on PATH —
each candidate is run (5 s bound) to read its real version, so a pyenv shim
for an inactive version is never taken. Standard library only.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

from lab.deps import DEFAULT_PYTHON


class InterpreterMissing(LookupError):
    """No interpreter for the requested version; str() says where the lab looked."""


def _version_of(path: str) -> str | None:
    try:
        out = subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _candidates(wanted: str) -> List[str]:
    env = os.environ.get("LAB_PYTHON_" + wanted.replace(".", "_"))
    found = [env] if env else []
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for directory in sorted(glob.glob(os.path.join(root, "versions", f"{wanted}.*")), reverse=True):
        found.append(os.path.join(directory, "bin", f"python{wanted}"))
    uv = shutil.which("uv")
    if uv:
        try:
            out = subprocess.run([uv, "python", "find", "--no-python-downloads", wanted],
                                 capture_output=True, text=True, timeout=15)
            if out.returncode == 0 and out.stdout.strip():
                found.append(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    on_path = shutil.which(f"python{wanted}")
    if on_path:
        found.append(on_path)
    return found


@functools.lru_cache(maxsize=None)
def find_python(wanted: str) -> Tuple[str, str]:
    """(path, full version) for "3.9" (major.minor) or "default"; raises InterpreterMissing."""
    if wanted in ("", DEFAULT_PYTHON):
        import platform
        return os.path.realpath(sys.executable), platform.python_version()  # the same for every venv
    tried = []
    for path in _candidates(wanted):
        if not os.path.exists(path):
            tried.append(f"{path} (absent)")
            continue
        version = _version_of(path)
        if version and (version == wanted or version.startswith(wanted + ".")):
            return path, version
        tried.append(f"{path} ({version or 'would not run'})")
    raise InterpreterMissing(f"no Python {wanted} interpreter on this machine (looked at: "
                             f"{'; '.join(tried) or 'pyenv versions, uv python find, PATH — none found'}; "
                             f"set LAB_PYTHON_{wanted.replace('.', '_')}=/path/to/python{wanted})")
