"""Faults as data: what is done to a worker, and when — one module per family.

Contract: each family is an enum whose values are the names matrices use
(as Celery's t/smoke/operations and Jepsen's nemeses keep theirs), plus the
one function that carries the fault out, so every scenario injects it the
same way and records the same facts. Nothing acts at import.

  signals    a signal to the master, the group or a pool child (Signal)
  eviction   a pod eviction (SIGTERM, grace, SIGKILL to the group), and the
             master alone SIGKILLed as `kill -9 <pid>` does (Eviction)
  child      pool-child recycling by memory and by task count (Recycle)
  control    remote control through the broker at a chosen moment (Control)
  resources  start-up resource limits: RLIMIT_NOFILE high or low (Limit)
  broker     broker faults (BrokerFault, Moment: the broker-fault scenario's modes)

`Fault` is the union of the older names, kept for importers of `lab.faults`.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> family module; imported on first use, so `lab.faults.broker` (read by lab.catalog, which the
# noxfile loads with the standard library only) does not pull in the worker controller and psutil
_WHERE = {"Recycle": "child", "Control": "control", "Eviction": "eviction", "EvictionPlan": "eviction",
          "apply_eviction": "eviction", "kill_master_only": "eviction", "Limit": "resources",
          "Fault": "signals", "Signal": "signals", "BrokerFault": "broker", "Moment": "broker"}
_FAMILIES = {"signals": ("signals", "Signal"), "eviction": ("eviction", "Eviction"),
             "child": ("child", "Recycle"), "control": ("control", "Control"),
             "resources": ("resources", "Limit"), "broker": ("broker", "BrokerFault")}


def __getattr__(name: str) -> Any:
    if name == "FAMILIES":
        return {family: getattr(importlib.import_module(f"lab.faults.{mod}"), enum)
                for family, (mod, enum) in _FAMILIES.items()}
    if name in _WHERE:
        return getattr(importlib.import_module(f"lab.faults.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'lab.faults' has no attribute {name!r}")


__all__ = ["FAMILIES", *_WHERE]
