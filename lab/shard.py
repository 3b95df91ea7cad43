"""Shards: one plan split over N machines, balanced by estimated time.

Contract. `balance(cells, n)` deals the cells of one plan into n shards by
longest-processing-time-first (each cell, longest estimate first, goes to
the shard with the least estimated work; ties by cell id), so the split is
deterministic: every CI job computes the same shards from the same matrix.
`plan_id(cells)` names the plan (a hash of the sorted cell ids): shards of
one plan carry the same id, which is how `lab report DIR...` knows they are
parts of one run and not counts of missing cells. `github_matrix(...)` is
the JSON a GitHub Actions `strategy.matrix` takes (`{"include": [...]}`).
`parse_shard("2/8")` -> (2, 8), raising ValueError with the allowed form.
Standard library only.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Iterable

from lab.matrix import Cell

MAX_SHARDS = 256  # a GitHub Actions matrix holds at most 256 jobs


def plan_id(cells: Iterable[Cell]) -> str:
    """A short, stable name for the set of cells a plan holds (12 hex digits)."""
    joined = "\n".join(sorted(c.cell_id for c in cells))
    return hashlib.sha1(joined.encode()).hexdigest()[:12]


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 1 <= I <= N <= MAX_SHARDS; ValueError naming the form otherwise."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not found:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 2/8")
    index, count = int(found.group(1)), int(found.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"--shard {text!r}: N must be between 1 and {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: I must be between 1 and N={count}")
    return index, count


def balance(cells: list[Cell], count: int, estimate: Callable[[Cell], float]) -> list[list[Cell]]:
    """n lists of cells, each in plan order, balanced by `estimate` (seconds) with LPT."""
    if count < 1:
        raise ValueError("need at least one shard")
    loads = [0.0] * count
    members: list[list[Cell]] = [[] for _ in range(count)]
    for cell in sorted(cells, key=lambda c: (-estimate(c), c.cell_id)):
        target = min(range(count), key=lambda i: (loads[i], i))
        loads[target] += estimate(cell)
        members[target].append(cell)
    order = {c.cell_id: i for i, c in enumerate(cells)}
    return [sorted(group, key=lambda c: order[c.cell_id]) for group in members]


def shard_of(cells: list[Cell], index: int, count: int, estimate: Callable[[Cell], float]) -> list[Cell]:
    """The cells of shard `index` (1-based) of `count`."""
    return balance(cells, count, estimate)[index - 1]


def github_matrix(cells: list[Cell], count: int, estimate: Callable[[Cell], float],
                  matrix: str) -> dict[str, Any]:
    """{"include": [{"shard": "I/N", "index": I, "of": N, "cells": k, "estimate_min": m, "matrix": ...}]}."""
    shards = balance(cells, count, estimate)
    return {"include": [
        {"shard": f"{i}/{count}", "index": i, "of": count, "cells": len(group), "matrix": matrix,
         "estimate_min": round(sum(estimate(c) for c in group) / 60, 1)}
        for i, group in enumerate(shards, 1) if group]}


def imbalance(cells: list[Cell], count: int, estimate: Callable[[Cell], float]) -> float:
    """Largest shard's estimate over the mean (1.0 is perfect balance)."""
    loads = [sum(estimate(c) for c in group) for group in balance(cells, count, estimate)]
    mean = sum(loads) / len(loads) if loads else 0.0
    return round(max(loads) / mean, 3) if mean else 1.0
