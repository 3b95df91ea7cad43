"""Shards: balanced, deterministic, and merged by `lab report` as one plan."""

from __future__ import annotations

import pytest

from lab.matrix import load_matrix
from lab.plan import cell_estimate, make_plan, write_plan
from lab.report.loader import load
from lab.results import create_run_dir
from lab.shard import balance, github_matrix, imbalance, parse_shard, plan_id


def test_balance_is_a_partition_and_deterministic():
    cells = load_matrix("default").cells()
    shards = balance(cells, 5, cell_estimate)
    ids = [c.cell_id for group in shards for c in group]
    assert sorted(ids) == sorted(c.cell_id for c in cells) and len(ids) == len(set(ids))
    assert [[c.cell_id for c in g] for g in shards] == [[c.cell_id for c in g] for g in balance(cells, 5, cell_estimate)]
    assert imbalance(cells, 5, cell_estimate) < 1.15  # LPT on ~200 cells: within 15% of the mean


def test_plan_id_ignores_order_and_names_the_whole_plan():
    cells = load_matrix("smoke").cells()
    assert plan_id(cells) == plan_id(list(reversed(cells)))
    assert plan_id(cells) != plan_id(cells[1:])


def test_github_matrix_skips_empty_shards():
    cells = load_matrix("smoke").cells()[:2]
    rows = github_matrix(cells, 4, cell_estimate, "smoke")["include"]
    assert len(rows) == 2 and all(row["cells"] == 1 for row in rows)


@pytest.mark.parametrize("text,expected", [("1/1", (1, 1)), (" 3 / 8 ", (3, 8))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


def test_shard_plans_merge_without_counting_other_shards_as_missing(tmp_path):
    matrix = load_matrix("smoke")
    dirs = []
    for index in (1, 2, 3):
        run_dir = create_run_dir(tmp_path, f"s{index}")
        write_plan(run_dir, make_plan(matrix, f"s{index}", (index, 3)))
        dirs.append(run_dir)
    plans = [make_plan(matrix, "x", (i, 3)) for i in (1, 2, 3)]
    assert sum(len(p["cells"]) for p in plans) == len(matrix.cells())
    assert len({p["plan_id"] for p in plans}) == 1
    report = load(dirs[:2])
    planned = sum(len(cell.planned) for t in report.scenarios for s in t.sections for cell in s.cells.values())
    assert planned == len(plans[0]["cells"]) + len(plans[1]["cells"])
    assert report.shard_notes == [f"plan {plans[0]['plan_id']}: 2 of 3 shard(s) merged, "
                                  f"{planned} of {len(matrix.cells())} cells planned; missing shard(s) 3/3"]
