"""The names the lab knows: pools, brokers, backends, profiles, scenarios.

Contract: every name a matrix may use is defined here, with a one-line
meaning, so validation, the CLI and the report agree. Scenario entries hold
only metadata (modes, profiles, a duration estimate); their code lives in
lab/scenarios/<name>.py. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POOLS = {
    "prefork": "billiard process pool (forks children; needs a writable /dev/shm)",
    "gevent": "greenlets, monkey-patched",
    "eventlet": "green threads, monkey-patched",
    "threads": "a thread pool in the main process",
    "solo": "runs tasks inline in the main process",
}
POOLS_WITH_CHILDREN = {"prefork"}

BROKERS = {
    "redis": "Redis (kombu redis transport)",
    "sql": "SQLite through kombu's SQLAlchemy transport",
    "sql-postgres": "PostgreSQL through kombu's SQLAlchemy transport",
    "amqp": "RabbitMQ (py-amqp)",
}

BACKENDS = {
    "auto": "redis for redis/amqp brokers, the same database for SQL brokers",
    "redis": "Redis result backend",
    "sqlite": "database result backend on SQLite",
    "postgres": "database result backend on PostgreSQL",
}

PROFILES: dict[str, dict[str, Any]] = {
    "defaults": {"description": "Celery defaults (early ack)", "settings": {}, "env": {}},
    "acks-late": {"description": "task_acks_late", "settings": {"task_acks_late": True}, "env": {}},
    "acks-late+reject-on-worker-lost": {
        "description": "task_acks_late and task_reject_on_worker_lost",
        "settings": {"task_acks_late": True, "task_reject_on_worker_lost": True}, "env": {},
    },
}


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    description: str
    modes: tuple[str, ...] = ("default",)
    default_profiles: tuple[str, ...] = ("defaults",)
    takes_profiles: bool = False
    estimate_s: float = 20.0
    tags: tuple[str, ...] = field(default_factory=tuple)


SCENARIOS = {
    "lifecycle-smoke": ScenarioInfo(
        name="lifecycle-smoke",
        description=("Start a worker, wait until ready, run a chord of three, send SIGTERM "
                     "and check the warm shutdown: exit code, callback, no process left."),
        estimate_s=12.0,
    ),
}


def resolve_backend(backend: str, broker: str) -> str:
    """Turn 'auto' into the concrete result backend for a broker."""
    if backend != "auto":
        return backend
    return {"redis": "redis", "amqp": "redis", "sql": "sqlite", "sql-postgres": "postgres"}[broker]
