"""Fault family `child`: pool children recycled by Celery itself, by memory or by task count.

Contract: `Recycle` names the two triggers a matrix may ask for and
`settings(recycle)` the Celery settings that arm them (merged into the
worker's LAB_CELERY_SETTINGS by the scenario):
  memory  worker_max_memory_per_child = MEMORY_LIMIT_KIB (KiB, Celery's unit:
          docs/userguide/configuration.rst); `lab.hog` tasks allocate
          HOG_MIB MiB each and keep it, so a child that ran one exceeds the
          limit and is replaced after that task (celery/concurrency/prefork.py
          checks ru_maxrss after each task);
  count   worker_max_tasks_per_child = MAX_TASKS: a child is replaced after
          that many tasks.
Only pools with child processes recycle (prefork).
"""

from __future__ import annotations

import enum
from typing import Any


class Recycle(str, enum.Enum):
    MEMORY = "memory"
    COUNT = "count"


HOG_MIB = 112              # what one lab.hog task allocates and keeps: alone above MEMORY_LIMIT_KIB, so a child
# that ran one exceeds the limit whatever its own baseline. 48 MiB relied on a 40-60 MiB child: with bytecode
# compiled (lab/venvs.py) an idle child is smaller and only 2 of 6 hogs recycled (runs 20261202-052530, -063424)
MEMORY_LIMIT_KIB = 96 * 1024  # above an idle prefork child on Redis (it peaked near 40-60 MiB before bytecode, less since)
MAX_TASKS = 5


def settings(recycle: Recycle | str) -> dict[str, Any]:
    """The Celery settings that arm `recycle`."""
    recycle = Recycle(recycle)
    if recycle == Recycle.MEMORY:
        return {"worker_max_memory_per_child": MEMORY_LIMIT_KIB}
    return {"worker_max_tasks_per_child": MAX_TASKS}
