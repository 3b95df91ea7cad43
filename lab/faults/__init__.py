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

from lab.faults.child import Recycle
from lab.faults.control import Control
from lab.faults.eviction import Eviction, EvictionPlan, apply_eviction, kill_master_only
from lab.faults.resources import Limit
from lab.faults.signals import Fault, Signal

FAMILIES = {"signals": Signal, "eviction": Eviction, "child": Recycle, "control": Control,
            "resources": Limit}

__all__ = ["FAMILIES", "Control", "Eviction", "EvictionPlan", "Fault", "Limit", "Recycle", "Signal",
           "apply_eviction", "kill_master_only"]
