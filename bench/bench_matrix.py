"""Benchmark: a matrix's wall time, its ratio to the inherent waits, the lane speed-up, shard balance.

Prints figures; asserts nothing (tests never assert timings).

    nox -s bench -- matrix --matrix default --lanes 1 auto     # the issue-15 figures
    python bench/bench_matrix.py --matrix smoke --lanes 1 2 auto

For each lanes value it plans the matrix into a fresh run dir under
--reports (default: a temp dir) and runs it with `lab run-sets --lanes L`
(venvs warm: built before the clock starts), then prints

  - wall time (seconds) and the host's load average at the end;
  - overhead ratio = sum of cell durations / sum of inherent waits, where a
    cell's inherent wait is what its scenario must wait by design (its
    `inherent_s` metric when the judge records one, else the catalog
    estimate) — above 1.0 is the lab's own cost;
  - speed-up against the first lanes value, and whether every deterministic
    cell's verdict set (lab.verdict.Outcome.finding_keys) equals that run's;
  - the balance of `lab plan --shards N` for N = 2, 4, 8 (largest / mean).

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

from lab.matrix import load_matrix  # noqa: E402
from lab.plan import cell_estimate  # noqa: E402
from lab.results import read_records  # noqa: E402
from lab.shard import imbalance  # noqa: E402

# Cells whose verdict depends on timing by design: compared, but a difference is not a disagreement.
TIMING = ("shutdown-race", "silent-exit")


def run(matrix: str, lanes: str, reports: Path) -> tuple[Path, float]:
    run_id = f"bench-{lanes}-{int(time.time())}"
    subprocess.run([sys.executable, "-m", "lab", "plan", "--matrix", matrix, "--run-id", run_id,
                    "--reports", str(reports), "--over-budget"], check=True, cwd=REPO)
    run_dir = reports / "runs" / run_id
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "lab", "run-sets", "--run-dir", str(run_dir), "--reports",
                    str(reports), "--lanes", lanes], cwd=REPO)
    return run_dir, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="smoke")
    parser.add_argument("--lanes", nargs="+", default=["1", "auto"])
    parser.add_argument("--reports", type=Path, default=None)
    args = parser.parse_args()
    reports = args.reports or Path(tempfile.mkdtemp(prefix="lab-bench-matrix-"))
    cells = load_matrix(args.matrix).cells()
    print(f"matrix {args.matrix}: {len(cells)} cells, estimated work {sum(map(cell_estimate, cells)):.0f}s; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for n in (2, 4, 8):
        print(f"  shards {n}: largest/mean estimate {imbalance(cells, n, cell_estimate)}")
    first: dict[str, frozenset] | None = None
    first_wall = None
    for lanes in args.lanes:
        run_dir, wall = run(args.matrix, lanes, reports)
        records = list(read_records([run_dir]))
        busy = sum(r.duration_s for r in records)
        inherent = sum(float(r.outcome.metrics.get("inherent_s") or cell_estimate_of(r)) for r in records)
        keys = {r.cell_id: r.outcome.finding_keys() | {r.outcome.verdict.value} for r in records}
        line = (f"lanes {lanes}: wall {wall:.0f}s, {len(records)} cells, cell time {busy:.0f}s, "
                f"overhead ratio {busy / inherent:.2f}, load at end {os.getloadavg()[0]:.2f}")
        if first is None:
            first, first_wall = keys, wall
        else:
            differ = sorted(c for c in keys if c in first and keys[c] != first[c])
            real = [c for c in differ if not c.startswith(TIMING)]
            line += (f", speed-up {first_wall / wall:.2f}x vs lanes {args.lanes[0]}, "
                     f"{len(real)} deterministic cell(s) differ" + (f": {real}" if real else "")
                     + (f" ({len(differ) - len(real)} timing-sensitive differ)" if len(differ) > len(real) else ""))
        print(line, flush=True)
    print(f"run dirs under {reports}")


def cell_estimate_of(record) -> float:
    from lab.matrix import Cell
    return cell_estimate(Cell.from_dict(record.cell))


if __name__ == "__main__":
    main()
