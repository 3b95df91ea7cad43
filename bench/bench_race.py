"""Benchmark: shutdown-race attempts per minute and time to first reproduction, per mode.

    /tmp/v562/bin/python bench/bench_race.py --attempts 40 --max-seconds 600
    /tmp/v562/bin/python bench/bench_race.py --modes random --profiles term quit --attempts 20

Each attempt is one real worker run of the shutdown-race scenario (the same
code path as a matrix cell: lab.cellrun.run_attempt), on the Celery installed
in this interpreter, against a Redis the lab starts on 127.0.0.1. For every
(mode, profile) it prints attempts/minute, each verdict/signature with k/n
and its 95% Wilson interval (as the attempt's headline, and seen at all among
its findings), and the wall time from the first attempt's start to the end of
the first attempt that showed it. --rejudge DIR re-reads kept attempts. Bounded by --attempts and
--max-seconds per (mode, profile). Prints figures; asserts nothing; every
worker and broker it starts is torn down.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import scenarios  # noqa: E402
from lab.catalog import PROFILES  # noqa: E402
from lab.cellrun import run_attempt  # noqa: E402
from lab.matrix import Cell  # noqa: E402
from lab.reaper import Reaper  # noqa: E402
from lab.services import ServiceHub  # noqa: E402
from lab.verdict import describe_rate  # noqa: E402

DEFAULT_MODES = ["random", "targeted", "targeted+kill-child", "slow-start"]


def bench_one(mode: str, profile: str, args, services, workdir: Path) -> dict:
    import celery
    cell = Cell(celery.__version__, args.pool, "redis", "redis", "shutdown-race", profile, mode,
                repeats=args.attempts, concurrency=args.concurrency, seed=args.seed)
    spec = {"namespace": re.sub(r"[^a-z0-9]+", "-", f"bench-{mode}-{profile}"), "broker_url": services.broker_url,
            "backend_url": services.backend_url, "profile": PROFILES[profile]}
    cell_dir = workdir / cell.cell_id
    scenario = scenarios.get("shutdown-race")
    began, rows, seen, first = time.monotonic(), [], [], {}
    for attempt in range(1, args.attempts + 1):
        if time.monotonic() - began >= args.max_seconds:
            break
        outcome, _ = run_attempt(scenario, cell, spec, attempt, cell_dir)
        record(rows, seen, first, attempt, outcome, time.monotonic() - began)
        print(f"  {mode:22s} {profile:16s} #{attempt:<3d} {outcome.verdict.value:5s} {rows[-1]:60s} "
              f"{outcome.metrics.get('attempt_s', 0) or 0:5.1f}s", flush=True)
        if outcome.verdict.value in ("n/a", "error"):
            print(f"    {outcome.summary[:300]}", flush=True)
            break
    return summary(mode, profile, rows, seen, first, time.monotonic() - began,
                   {"concurrency": args.concurrency, "pool": args.pool, "seed": args.seed,
                    "celery": cell.celery, "run_dir": str(cell_dir)})


def record(rows, seen, first, attempt, outcome, after_s) -> None:
    """The attempt's headline label, and every finding it showed (metrics["findings"])."""
    label = outcome.signature or outcome.verdict.value
    rows.append(label)
    labels = outcome.metrics.get("findings") or [label]
    seen.append(labels)
    for name in {label, *labels}:
        first.setdefault(name, {"attempt": attempt, "after_s": round(after_s, 1)})


def summary(mode, profile, rows, seen, first, elapsed, extra) -> dict:
    n = len(rows)
    names = list(dict.fromkeys([*rows, *(f for labels in seen for f in labels)]))
    return {"mode": mode, "profile": profile, "attempts": n, "seconds": round(elapsed, 1),
            "attempts_per_min": round(n / elapsed * 60, 2) if elapsed else 0.0,
            "outcomes": {name: {"k": rows.count(name), "seen_in": sum(name in s for s in seen),
                                "rate": describe_rate(rows.count(name), n),
                                "seen_rate": describe_rate(sum(name in s for s in seen), n),
                                "first_attempt": first[name]["attempt"],
                                "first_after_s": first[name]["after_s"]} for name in names},
            **extra}


def rejudge(root: Path) -> list[dict]:
    """Judge kept attempts again with the current checker (the log is re-read)."""
    from lab.scenarios.race_faults import chained_failures
    scenario, results = scenarios.get("shutdown-race"), []
    for cell_dir in sorted(p for p in root.iterdir() if (p / "attempt-1").is_dir()):
        rows, seen, first, elapsed = [], [], {}, 0.0
        paths = sorted(cell_dir.glob("attempt-*/observations.json"), key=lambda p: int(p.parent.name[8:]))
        for path in paths:
            obs = json.loads(path.read_text())
            log = path.parent / "worker.log"
            if log.exists():
                obs["failures"] = chained_failures(log.read_text(errors="replace"))
            elapsed += obs.get("attempt_s") or 0.0
            record(rows, seen, first, int(path.parent.name[8:]), scenario.judge(obs), elapsed)
        profile = cell_dir.name.split("--")[-2]
        mode = obs.get("mode") if paths else cell_dir.name.split("--")[-1]
        results.append(summary(mode, profile, rows, seen, first, elapsed, {"run_dir": str(cell_dir),
                                                                           "rejudged": True}))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=DEFAULT_MODES)
    parser.add_argument("--profiles", nargs="+", default=["quit"])
    parser.add_argument("--attempts", type=int, default=10, help="per (mode, profile)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="per (mode, profile)")
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="keep attempt logs/journals here")
    parser.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    parser.add_argument("--rejudge", metavar="DIR", help="no workers: judge the attempts kept in DIR "
                        "(--keep) again with the current checker; att/min from the recorded attempt times")
    args = parser.parse_args()
    if args.rejudge:
        return report(rejudge(Path(args.rejudge)), args)
    import celery
    print(f"celery {celery.__version__}, pool {args.pool}, concurrency {args.concurrency}, seed {args.seed}; "
          f"host {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    with Reaper() as reaper, tempfile.TemporaryDirectory(prefix="lab-bench-race-") as tmp:
        workdir = Path(args.keep).resolve() if args.keep else Path(tmp)
        hub = ServiceHub(Path(tmp) / "services")
        reaper.add("stop services", hub.close)
        services = hub.for_cell("redis", "redis", Path(tmp) / "svc", "benchrace")
        for mode in args.modes:
            for profile in args.profiles:
                results.append(bench_one(mode, profile, args, services, workdir))
    report(results, args)


def report(results: list[dict], args) -> None:
    print("\nmode                   profile          attempts  att/min  outcome: headline k/n (95% CI); "
          "seen in k/n; first at")
    for res in results:
        for index, (label, seen) in enumerate(res["outcomes"].items()):
            head = (f"{res['mode']:22s} {res['profile']:16s} {res['attempts']:8d} {res['attempts_per_min']:8.2f}"
                    if index == 0 else " " * 56)
            print(f"{head}  {label}: {seen['rate']}; seen in {seen['seen_in']}/{res['attempts']}; first at "
                  f"attempt {seen['first_attempt']} after {seen['first_after_s']:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
