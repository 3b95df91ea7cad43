"""Benchmark: a matrix's wall time, its ratio to the inherent waits, the lane speed-up, shard balance.

Prints figures; asserts nothing (tests never assert timings).

    nox -s bench -- matrix --matrix default --lanes 1 auto     # the issue-15 figures
    python bench/bench_matrix.py --matrix smoke --lanes 1 2 auto
    python bench/bench_matrix.py --analyze reports/runs/<id> [reports/runs/<id2>]  # figures of runs already made
    python bench/bench_matrix.py --analyze reports/runs/<id> --by-scenario  # where each scenario's time went
    python bench/bench_matrix.py --matrix default --lanes 1 --not-in reports/reference  # cells added since

For each lanes value it plans the matrix into a fresh run dir under
--reports (default: a temp dir) and runs it with `lab run-sets --lanes L`
(venvs warm: built before the clock starts), then prints

  - wall time (seconds) and the host's load average at the end;
  - overhead ratio = sum of cell durations / sum of inherent waits, where a
    cell's inherent wait is what its scenario waited on the worker and broker
    by design (its `inherent_s` metric, booked by lab/waits.py: designed holds
    and bounded waits for observed events) — above 1.0 is the lab's own cost
    (interpreters, imports, provisioning, confirmation, teardown). It is
    printed twice: strict, and with the workers' own start-to-ready (Celery's
    start-up, mingle's 1 s included, drain workers excepted) counted as needed; n/a cells (no wait by
    design) are left out of both;
  - speed-up against the first lanes value, and whether every deterministic
    cell agrees with that run's (lab.verdict.agree: the same findings; for a
    repeated cell, overlapping k/n intervals of every finding);
  - the balance of `lab plan --shards N` for N = 2, 4, 8 (largest / mean);
  - with --analyze, the host's speed through each run (lab.hostspeed: the
    same work cost up to 2x the CPU from one hour to the next on this kind
    of machine, so compare walls and CPU only beside it).

Run one heavy job at a time: timing-sensitive cells lie under load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.catalog import SCENARIOS  # noqa: E402
from lab.hostspeed import SPEED_FILE, read_samples, summarize  # noqa: E402
from lab.matrix import load_matrix  # noqa: E402
from lab.plan import cell_estimate  # noqa: E402
from lab.results import read_records  # noqa: E402
from lab.shard import imbalance  # noqa: E402
from lab.verdict import agree  # noqa: E402

# Cells whose verdict depends on timing by design (lab.catalog ScenarioInfo.timing_sensitive, with the
# basis there): compared, but a difference is not a disagreement.
TIMING = tuple(name for name, info in SCENARIOS.items() if info.timing_sensitive)


def run(matrix: str, lanes: str, reports: Path, only: list[str] | None = None) -> tuple[Path, float]:
    """Plan `matrix` into a fresh run dir under `reports` and run it with `lanes` (only the cell
    ids in `only`, when given); returns the run dir and its wall time in seconds."""
    run_id = f"bench-{lanes}-{int(time.time())}"
    subprocess.run([sys.executable, "-m", "lab", "plan", "--matrix", matrix, "--run-id", run_id,
                    "--reports", str(reports), "--over-budget"], check=True, cwd=REPO)
    run_dir = reports / "runs" / run_id
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "lab", "run-sets", "--run-dir", str(run_dir), "--reports",
                    str(reports), "--lanes", lanes, *[a for c in only or [] for a in ("--only", c)]], cwd=REPO)
    return run_dir, time.monotonic() - began


def figures(records: list, wall: float | None = None) -> str:
    """One line of figures for a run's records (wall in s when known, else first start to last end)."""
    ran = [r for r in records if r.outcome.metrics.get("waits") and r.outcome.verdict.value != "n/a"]
    busy = sum(r.duration_s for r in ran)
    inherent = sum(float(r.outcome.metrics["waits"].get("inherent") or 0) for r in ran)
    start = sum(float(r.outcome.metrics["waits"].get("start") or 0) for r in ran)
    cpu = sum(sum((r.outcome.metrics.get("cpu_s") or {}).values()) for r in ran)
    booked = any(r.outcome.metrics.get("cpu_s") for r in ran)
    if wall is None and records:
        wall = max(r.started_at + r.duration_s for r in records) - min(r.started_at for r in records)
    lanes = [((r.environment or {}).get("lanes") or {}).get("running") for r in records]
    lanes = sorted(x for x in lanes if x)
    return (f"wall {wall:.0f}s, {len(records)} cells ({len(ran)} with waits booked), cell time {busy:.0f}s, "
            f"overhead ratio {busy / inherent if inherent else float('nan'):.2f} strict, "
            f"{busy / (inherent + start) if inherent + start else float('nan'):.2f} with the workers' start-to-ready "
            f"({start:.0f}s), " + (f"CPU {cpu:.0f}s in the cells" if booked else "CPU not booked in these records")
            + (f", lanes in use at admission median {lanes[len(lanes) // 2]} max {lanes[-1]}" if lanes else ""))


def by_scenario(records: list) -> str:
    """A table of where each scenario's cell time went, in seconds: hold and observe (inherent),
    the workers' start-to-ready, the rest (the lab's own), CPU; n/a cells left out."""
    rows: dict[str, list[float]] = {}
    for r in records:
        waits = r.outcome.metrics.get("waits")
        if not waits or r.outcome.verdict.value == "n/a":
            continue
        row = rows.setdefault(r.cell["scenario"] if isinstance(r.cell, dict) else r.cell.scenario, [0.0] * 7)
        own = r.duration_s - sum(float(waits.get(k) or 0) for k in ("hold", "observe", "start"))
        for i, value in enumerate((1, r.duration_s, waits.get("hold"), waits.get("observe"),
                                   waits.get("start"), own, sum((r.outcome.metrics.get("cpu_s") or {}).values()))):
            row[i] += float(value or 0)
    head = f"  {'scenario':26s} {'cells':>5s} {'time':>7s} {'hold':>7s} {'observe':>7s} {'start':>6s} {'own':>6s} {'cpu':>6s}"
    lines = [head] + [f"  {name:26s} {int(v[0]):5d} " + " ".join(f"{x:{w}.0f}" for x, w in zip(v[1:], (7, 7, 7, 6, 6, 6)))
                      for name, v in sorted(rows.items(), key=lambda kv: -kv[1][1])]
    return "\n".join(lines)


def host_speed(run_dir: Path) -> str:
    """Words for the run's host-speed samples (lab.hostspeed: CPU seconds of a fixed workload; higher
    is slower), or why there are none."""
    found = summarize(read_samples(Path(run_dir) / SPEED_FILE))
    if not found:
        return "host speed: not sampled (a run before lab.hostspeed)"
    return (f"host speed: calibration {found['median_s'] * 1000:.0f} ms CPU median over {found['samples']} "
            f"samples ({found['min_s'] * 1000:.0f}-{found['max_s'] * 1000:.0f} ms; higher is a slower host)")


def disagreement(first: dict, outcomes: dict) -> str:
    """Words for the cells of `outcomes` that do not agree (lab.verdict.agree) with `first`'s."""
    differ = sorted(c for c in outcomes if c in first and not agree(first[c], outcomes[c]))
    real = [c for c in differ if c.split("--", 1)[0] not in TIMING]
    return (f"{len(real)} deterministic cell(s) differ" + (": " + ", ".join(real) if real else "")
            + (f"; {len(differ) - len(real)} timing-sensitive differ" if len(differ) > len(real) else ""))


def analyze(run_dirs: list[Path], by: bool = False) -> None:
    first: dict | None = None
    for run_dir in run_dirs:
        if not (Path(run_dir) / "results.jsonl").is_file():
            sys.exit(f"{run_dir}: not a run dir (no results.jsonl; a run dir is reports/runs/<id>)")
        records = list(read_records([run_dir]))
        if not records:
            sys.exit(f"{run_dir}: no records (a run dir holds results.jsonl; e.g. reports/runs/<id>)")
        print(f"{run_dir}: {figures(records)}")
        print(f"  {host_speed(run_dir)}")
        if by:
            print(by_scenario(records))
        outcomes = {r.cell_id: r.outcome for r in records}
        if first is None:
            first = outcomes
            continue
        print(f"  vs {run_dirs[0]}: {disagreement(first, outcomes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="smoke")
    parser.add_argument("--lanes", nargs="+", default=["1", "auto"])
    parser.add_argument("--reports", type=Path, default=None)
    parser.add_argument("--not-in", type=Path, default=None, metavar="RUN_DIR",
                        help="run only the matrix's cells that RUN_DIR has no record of (e.g. cells added since it)")
    parser.add_argument("--analyze", nargs="+", type=Path, default=None,
                        help="print the figures of existing run dirs (the first is the baseline) and run nothing")
    parser.add_argument("--by-scenario", action="store_true",
                        help="with --analyze: where each scenario's cell time went (hold, observe, start, own, CPU)")
    args = parser.parse_args()
    if args.analyze:
        analyze(args.analyze, args.by_scenario)
        return
    reports = args.reports or Path(tempfile.mkdtemp(prefix="lab-bench-matrix-"))
    cells = load_matrix(args.matrix).cells()
    only = None
    if args.not_in:
        known = {r.cell_id for r in read_records([args.not_in])}
        cells = [c for c in cells if c.cell_id not in known]
        only = [c.cell_id for c in cells]
        if not only:
            print(f"every cell of matrix {args.matrix} has a record in {args.not_in}: nothing to run")
            return
    print(f"matrix {args.matrix}: {len(cells)} cells, estimated work {sum(map(cell_estimate, cells)):.0f}s; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for n in (2, 4, 8):
        print(f"  shards {n}: largest/mean estimate {imbalance(cells, n, cell_estimate)}")
    first: dict | None = None
    first_wall = None
    for lanes in args.lanes:
        run_dir, wall = run(args.matrix, lanes, reports, only)
        records = list(read_records([run_dir]))
        outcomes = {r.cell_id: r.outcome for r in records}
        line = f"lanes {lanes}: {figures(records, wall)}, load at end {os.getloadavg()[0]:.2f}"
        if first is None:
            first, first_wall = outcomes, wall
        else:
            line += f", speed-up {first_wall / wall:.2f}x vs lanes {args.lanes[0]}, {disagreement(first, outcomes)}"
        print(line, flush=True)
    print(f"run dirs under {reports}")


if __name__ == "__main__":
    main()
