"""Benchmark: what Celery's default flags cost at start-up (issue 11).

Start-to-ready (Popen to the master's worker_ready journal event, s) and
ready-to-exit after SIGTERM, per pool on one lab-owned Redis, with Celery's
defaults (gossip, mingle, heartbeat on) and with the flags the lab used to
pass (--without-gossip --without-mingle --without-heartbeat), stdout/stderr
as pipes (the lab's default). Alternates the two variants so load drifts hit
both; one worker at a time. Prints median / min / max per cell, the ratio,
and the 1-minute load average before and after. Asserts nothing.

    .nox/tests/bin/python bench/bench_startup.py --repeats 5
    .nox/tests/bin/python bench/bench_startup.py --pools prefork,solo --repeats 7 --stdio tty
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.services import ServiceHub  # noqa: E402
from lab.worker import QUIET_FLAGS, WorkerController, WorkerSpec  # noqa: E402

POOLS = ["prefork", "gevent", "eventlet", "threads", "solo"]
VARIANTS = {"defaults": [], "quiet": list(QUIET_FLAGS)}


def one_start(workdir: Path, env: dict, pool: str, args: list[str], stdio: str) -> tuple[float, float]:
    spec = WorkerSpec(pool=pool, concurrency=2, queue="lab.bench", env=env, profile_args=args, stdio=stdio)
    worker = WorkerController(spec, workdir, workdir / "journal.jsonl").start()
    try:
        if not worker.wait_ready(60, confirm_s=0.0):
            raise RuntimeError(f"{pool} {args} never ready:\n{worker.log_text()[-2000:]}")
        ready = time.monotonic() - worker.started_mono
        term = time.monotonic()
        worker.send(signal.SIGTERM)
        info = worker.wait_exit(30)
        stop = time.monotonic() - term if info.exited else float("nan")
        return ready, stop
    finally:
        worker.teardown()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pools", default=",".join(POOLS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stdio", default="pipe")
    args = parser.parse_args()
    import celery
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lab-bench-startup-") as tmp:
        hub = ServiceHub(Path(tmp) / "services")
        try:
            services = hub.for_cell("redis", "redis", Path(tmp) / "svc", "bench")
            env = {"LAB_BROKER_URL": services.broker_url, "LAB_RESULT_BACKEND": services.backend_url,
                   "LAB_QUEUE": "lab.bench"}
            print(f"celery {celery.__version__}, redis, stdio={args.stdio}, n={args.repeats} per cell, "
                  f"load(1m) before {load0:.2f}")
            print(f"{'pool':9} {'variant':9} {'ready med':>9} {'min':>6} {'max':>6} {'stop med':>8}")
            for pool in args.pools.split(","):
                times: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
                for i in range(args.repeats):
                    for variant, flags in VARIANTS.items():
                        workdir = Path(tmp) / f"{pool}-{variant}-{i}"
                        workdir.mkdir()
                        times[variant].append(one_start(workdir, env, pool, flags, args.stdio))
                for variant, rows in times.items():
                    ready = [r for r, _ in rows]
                    stop = [s for _, s in rows]
                    print(f"{pool:9} {variant:9} {statistics.median(ready):9.2f} {min(ready):6.2f} "
                          f"{max(ready):6.2f} {statistics.median(stop):8.2f}")
                ratio = (statistics.median(r for r, _ in times["defaults"])
                         / statistics.median(r for r, _ in times["quiet"]))
                print(f"{pool:9} {'ratio':9} {ratio:9.2f}  (defaults / quiet, start-to-ready)")
        finally:
            hub.close()
    print(f"load(1m) after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
