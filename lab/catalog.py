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
    "soft-shutdown": {
        "description": ("task_acks_late + worker_soft_shutdown_timeout=3s (Celery's soft shutdown acts "
                        "on cold shutdown only: a plain SIGTERM is still a warm shutdown)"),
        "settings": {"task_acks_late": True, "worker_soft_shutdown_timeout": 3.0}, "env": {},
    },
    "soft-shutdown+remap-sigterm": {
        "description": "soft-shutdown with REMAP_SIGTERM=SIGQUIT, so SIGTERM starts the cold/soft path",
        "settings": {"task_acks_late": True, "worker_soft_shutdown_timeout": 3.0},
        "env": {"REMAP_SIGTERM": "SIGQUIT"},
    },
    "finalize-on-shutdown": {
        "description": ("task_acks_late + the seed-001 mitigation: worker_shutting_down raises a flag "
                        "the running task polls, so it returns partial results early"),
        "settings": {"task_acks_late": True},
        "env": {"LAB_APP_MODULES": "lab.app.finalize", "LAB_FINALIZE": "1"},
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
    mode_estimates: tuple[tuple[str, float], ...] = ()  # modes that take longer than estimate_s
    tags: tuple[str, ...] = field(default_factory=tuple)

    def estimate(self, mode: str) -> float:
        return dict(self.mode_estimates).get(mode, self.estimate_s)


SCENARIOS = {
    "lifecycle-smoke": ScenarioInfo(
        name="lifecycle-smoke",
        description=("Start a worker, wait until ready, run a chord of three, send SIGTERM "
                     "and check the warm shutdown: exit code, callback, no process left."),
        estimate_s=12.0,
    ),
}


EVICTION_PROFILES = ("defaults", "acks-late", "acks-late+reject-on-worker-lost", "soft-shutdown",
                     "soft-shutdown+remap-sigterm", "finalize-on-shutdown")
SCENARIOS["eviction"] = ScenarioInfo(
    name="eviction",
    description=("A Kubernetes pod eviction with a chord in flight: SIGTERM to the master, a scaled-down "
                 "grace (4 s for 60 s), SIGKILL to the process group, a replacement worker started at "
                 "SIGTERM. Judged from the task ledger, the callback's input and broker snapshots."),
    modes=("verdict", "measure-stall"),
    default_profiles=EVICTION_PROFILES,
    takes_profiles=True,
    estimate_s=22.0,
    mode_estimates=(("measure-stall", 150.0),),
)

# shutdown-race: the profile is the signal plan (LAB_RACE_SIGNALS, read by the driver; REMAP_SIGTERM
# is Celery's own worker setting); the mode is how the signal is timed (lab/scenarios/race_faults.py).
PROFILES.update({
    "term": {"description": "shutdown-race signals: SIGTERM (warm shutdown)",
             "settings": {}, "env": {"LAB_RACE_SIGNALS": "TERM"}},
    "quit": {"description": "shutdown-race signals: SIGQUIT (cold shutdown)",
             "settings": {}, "env": {"LAB_RACE_SIGNALS": "QUIT"}},
    "term-then-quit": {"description": "shutdown-race signals: SIGTERM, then SIGQUIT 0.2-1 s later",
                       "settings": {}, "env": {"LAB_RACE_SIGNALS": "TERM,QUIT"}},
    "term-remap-quit": {"description": "shutdown-race signals: SIGTERM with REMAP_SIGTERM=SIGQUIT (cold)",
                        "settings": {}, "env": {"LAB_RACE_SIGNALS": "TERM", "REMAP_SIGTERM": "SIGQUIT"}},
})
SCENARIOS["shutdown-race"] = ScenarioInfo(
    name="shutdown-race",
    description=("--max-tasks-per-child=1 and a flood of instant tasks keep prefork children being "
                 "replaced while the profile's signals arrive: at a random 1-4 s (random), from inside "
                 "the master at a named point of repopulation (targeted...), or while children start "
                 "slower than worker_proc_alive_timeout (slow-start). Judged from exit code, log "
                 "signatures, journal and process table."),
    modes=("targeted", "targeted+kill-child", "targeted@registering", "targeted@before-create",
           "random", "slow-start"),
    default_profiles=("quit", "term", "term-then-quit", "term-remap-quit"),
    takes_profiles=True,
    estimate_s=9.0,
)


def resolve_backend(backend: str, broker: str) -> str:
    """Turn 'auto' into the concrete result backend for a broker."""
    if backend != "auto":
        return backend
    return {"redis": "redis", "amqp": "redis", "sql": "sqlite", "sql-postgres": "postgres"}[broker]
