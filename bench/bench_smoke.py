"""Benchmark: smoke matrix wall time, venv time per Celery version, and
worker start-to-ready per pool. Prints figures; asserts nothing.

    nox -s bench                       # all three figures
    python bench/bench_smoke.py --skip-matrix --versions 5.6.2 --repeats 5

Run inside an environment with the lab and Celery installed (the bench
session makes one). Every worker and broker it starts is torn down.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.services import ServiceHub  # noqa: E402
from lab.worker import WorkerController, WorkerSpec  # noqa: E402

POOLS = ["prefork", "gevent", "eventlet", "threads", "solo"]
EXTRAS = ["gevent==26.9.0", "eventlet==0.41.3", "psycopg2-binary==2.9.13"]


def venv_seconds(version: str) -> float:
    uv = shutil.which("uv")
    with tempfile.TemporaryDirectory(prefix="lab-bench-venv-") as tmp:
        began = time.monotonic()
        if uv:
            subprocess.run([uv, "venv", "-q", "-p", sys.executable, tmp], check=True)
            subprocess.run([uv, "pip", "install", "-q", "-p", f"{tmp}/bin/python",
                            f"celery[redis,sqlalchemy]=={version}", *EXTRAS, "-e", str(REPO)], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
            subprocess.run([f"{tmp}/bin/pip", "install", "-q", f"celery[redis,sqlalchemy]=={version}",
                            *EXTRAS, "-e", str(REPO)], check=True)
        return time.monotonic() - began


def start_to_ready(pool: str, repeats: int, workdir: Path) -> list[float]:
    hub = ServiceHub(workdir / "services")
    times = []
    try:
        services = hub.for_cell("redis", "redis", workdir / f"svc-{pool}", "bench")
        for index in range(repeats):
            env = {"LAB_BROKER_URL": services.broker_url, "LAB_RESULT_BACKEND": services.backend_url,
                   "LAB_QUEUE": f"bench.{pool}.{index}"}
            spec = WorkerSpec(pool=pool, concurrency=2, queue=env["LAB_QUEUE"], env=env)
            worker = WorkerController(spec, workdir / f"{pool}-{index}", workdir / f"{pool}-{index}.jsonl")
            try:
                worker.start()
                if worker.wait_ready(60, confirm_s=0):
                    ready = [e for e in worker.events() if e["event"] == "worker_ready"][0]
                    times.append(ready["mono"] - worker.started_mono)
                worker.send(signal.SIGTERM)
                worker.wait_exit(30)
            finally:
                worker.teardown()
    finally:
        hub.close()
    return times


def smoke_matrix_seconds() -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="lab-bench-reports-") as reports:
        began = time.monotonic()
        proc = subprocess.run(["nox", "-s", "matrix", "--", "--matrix", "smoke"], cwd=REPO,
                              env={**os.environ, "LAB_REPORTS_DIR": reports},
                              capture_output=True, text=True, timeout=1800)
        return time.monotonic() - began, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=["5.6.2"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--skip-venv", action="store_true")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    if not args.skip_venv:
        for version in args.versions:
            print(f"venv celery=={version}: {venv_seconds(version):.1f}s (uv, warm cache)", flush=True)
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        for pool in POOLS:
            times = start_to_ready(pool, args.repeats, Path(tmp))
            if times:
                print(f"start-to-ready {pool:8s}: median {statistics.median(times):.2f}s "
                      f"min {min(times):.2f}s max {max(times):.2f}s (n={len(times)})", flush=True)
            else:
                print(f"start-to-ready {pool:8s}: never ready", flush=True)
    if not args.skip_matrix:
        seconds, code = smoke_matrix_seconds()
        print(f"smoke matrix via nox: {seconds:.1f}s wall (exit {code})", flush=True)


if __name__ == "__main__":
    main()
