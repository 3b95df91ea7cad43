"""Scenario registry: name -> Scenario instance (one module per scenario).

Contract: every name in lab.catalog.SCENARIOS has exactly one module here
exposing `SCENARIO`; `get(name)` imports it lazily.
"""

from __future__ import annotations

import importlib

from lab import catalog
from lab.scenarios.base import CellContext, Scenario

MODULES = {name: "lab.scenarios." + name.replace("-", "_") for name in catalog.SCENARIOS}


def get(name: str) -> Scenario:
    if name not in MODULES:
        raise KeyError(f"unknown scenario {name!r}; allowed: {', '.join(sorted(MODULES))}")
    return importlib.import_module(MODULES[name]).SCENARIO


__all__ = ["CellContext", "Scenario", "get", "MODULES"]
