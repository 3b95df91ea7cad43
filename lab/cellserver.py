"""A per-set fork server for cell processes: the lab's client imports once, each cell forks.

Contract. `python -m lab.cellserver` (run by lab.runner with a set venv's
interpreter) imports lab.cellrun, the scenarios and Celery's client modules,
then reads one JSON request per line on stdin: {"spec": path, "log": path,
"token": owner token}. For each it forks a child that starts a session of
its own, dies with the server (PR_SET_PDEATHSIG SIGKILL; the server dies
with the runner the same way), writes stdout/stderr to `log`, takes `token`
as its LAB_OWNER (so the workers it starts carry the cell's token), reseeds
`random`, and runs `lab.cellrun.main([spec])`. The server answers
{"pid": N, "id": <the request's id>} at once and {"pid": N, "status": S}
when it reaps the child (S as Popen.returncode: negative for a signal). No
threads exist before a fork; the cell process never collects cycles
(lab.cellrun.main) and the server's imports are gc.freeze()d.

Why: a cell process used to start a fresh interpreter and import Celery,
kombu and its transport (~0.6-0.9 CPU-s a cell; run 20261202-005733: 304 of
1268 CPU-s in the cells). The cell process is the lab's client, never the
system under test: every worker is still a fresh `celery worker` exec'd as
production starts it. LAB_CELL_SERVER=0 goes back to one interpreter per cell.
"""

from __future__ import annotations

import gc
import json
import os
import random
import select
import signal
import sys

PRELOAD = ("celery", "celery.canvas", "celery.result", "celery.app.defaults", "celery.backends.base",
           "kombu", "kombu.transport.virtual")


def preload() -> list[str]:
    """Import what every cell process needs; returns the modules that failed to import (a set
    whose Celery cannot import is reported by the cell itself, as setup-failed)."""
    import importlib

    import lab.cellrun  # noqa: F401
    from lab import scenarios
    failed = []
    for name in list(scenarios.MODULES.values()) + list(PRELOAD):
        try:
            importlib.import_module(name)
        except Exception:
            failed.append(name)
    return failed


def _child(request: dict) -> None:
    from lab import cellrun, lifetime
    from lab.reaper import OWNER_ENV

    os.setsid()
    lifetime.die_with_parent(signal.SIGKILL)  # the server (a fork: no thread of its own to outlive)
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(0, closefd=False)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.environ[OWNER_ENV] = request["token"]
    random.seed()
    code = 1
    try:
        code = cellrun.main([request["spec"]])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def serve() -> int:
    failed = preload()
    gc.freeze()  # what the server imported is never scanned again, in it or in a forked cell
    out = sys.stdout
    out.write(json.dumps({"ready": True, "preload_failed": failed}) + "\n")
    out.flush()
    children: set[int] = set()
    buffer = b""
    stdin = sys.stdin.buffer.fileno()
    open_input = True
    while open_input or children:
        ready, _, _ = select.select([stdin] if open_input else [], [], [], 0.05)
        if ready:
            data = os.read(stdin, 65536)
            if not data:
                open_input = False
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children.add(pid)
                out.write(json.dumps({"pid": pid, "id": request.get("id")}) + "\n")
                out.flush()
        while children:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            out.write(json.dumps({"pid": pid, "status": _status(raw)}) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(serve())
