"""The names the lab knows: pools, brokers, backends, profiles, scenarios.

Contract: every name a matrix may use is defined here, with a one-line
meaning, so validation, the CLI and the report agree. Scenario entries hold
only metadata (modes, profiles, a duration estimate); their code lives in
lab/scenarios/<name>.py. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.worker_output import STDIO_MODES  # noqa: F401 - a name matrices use (profile key `stdio`)

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

# worker_soft_shutdown_timeout of the soft-shutdown profiles: 1 s of the eviction's 4 s grace, standing
# for 15 s of a 60 s terminationGracePeriodSeconds (lab.scenarios.eviction PLAN). Celery's cold shutdown
# after the soft timeout takes 1.1-1.6 s to restore the in-flight message (run 20261204-183506, 16 lanes:
# re-run 3.1-3.6 s after SIGTERM at 2 s): at 3 s the restore raced the SIGKILL (restored 4.0-4.2 s after
# SIGTERM in some runs, parked in others: 20261202-123112, 20261204-182144 vs the reference), and 2 s
# left it 0.4-0.9 s.
SOFT_SHUTDOWN_S = 1.0

PROFILES: dict[str, dict[str, Any]] = {
    "defaults": {"description": "Celery defaults (early ack)", "settings": {}, "env": {}},
    "acks-late": {"description": "task_acks_late", "settings": {"task_acks_late": True}, "env": {}},
    "acks-late+reject-on-worker-lost": {
        "description": "task_acks_late and task_reject_on_worker_lost",
        "settings": {"task_acks_late": True, "task_reject_on_worker_lost": True}, "env": {},
    },
    "soft-shutdown": {
        "description": ("task_acks_late + worker_soft_shutdown_timeout=1s, standing for 15 s of a 60 s grace (Celery's soft shutdown acts "
                        "on cold shutdown only: a plain SIGTERM is still a warm shutdown)"),
        "settings": {"task_acks_late": True, "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_S}, "env": {},
    },
    "soft-shutdown+remap-sigterm": {
        "description": "soft-shutdown with REMAP_SIGTERM=SIGQUIT, so SIGTERM starts the cold/soft path",
        "settings": {"task_acks_late": True, "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_S},
        "env": {"REMAP_SIGTERM": "SIGQUIT"},
    },
    "finalize-on-shutdown": {
        "description": ("task_acks_late + the seed-001 mitigation: worker_shutting_down raises a flag "
                        "the running task polls, so it returns partial results early"),
        "settings": {"task_acks_late": True},
        "env": {"LAB_APP_MODULES": "lab.app.finalize", "LAB_FINALIZE": "1"},
    },
}
# Worker wiring (issue 11): how production starts the worker, when a cell asks for something else.
PROFILES.update({
    "stdio-tty": {"description": "stdout/stderr/stdin are a pseudo-terminal (docker run -t)",
                  "settings": {}, "env": {}, "stdio": "tty"},
    "stdio-file": {"description": "stdout/stderr are a regular file (the lab's old wiring)",
                   "settings": {}, "env": {}, "stdio": "file"},
    "quiet-startup": {"description": "--without-gossip --without-mingle --without-heartbeat (the lab's "
                                     "old flags)", "settings": {}, "env": {},
                      "worker_args": ["--without-gossip", "--without-mingle", "--without-heartbeat"]},
})


@dataclass(frozen=True)
class ScenarioInfo:
    """A scenario's metadata. Every profile applies to every scenario (a profile is the
    worker's configuration: settings, env, stdio, worker_args); `default_profiles` are the ones
    a matrix gets when it names none, the first of them by default."""

    name: str
    description: str
    modes: tuple[str, ...] = ("default",)
    default_profiles: tuple[str, ...] = ("defaults",)
    takes_profiles: bool = False  # informational: the scenario was designed around several profiles
    profile_is_plan: bool = False  # its profiles are its plans (shutdown-race): no other profile fits
    estimate_s: float = 20.0
    mode_estimates: tuple[tuple[str, float], ...] = ()  # modes that take longer than estimate_s
    broker_extra_s: tuple[tuple[str, float], ...] = ()  # seconds more on these brokers
    tags: tuple[str, ...] = field(default_factory=tuple)
    # A race by construction: the fault lands at a random or load-dependent moment of the worker's
    # loop, so a single attempt may find or miss a finding with the same code and lanes. The bench
    # compares such cells but does not count a difference as a disagreement (bench/bench_matrix.py).
    timing_sensitive: bool = False

    def estimate(self, mode: str, broker: str = "") -> float:
        """Seconds one attempt of `mode` is expected to take on `broker` (medians measured on
        2 cores under auto lanes; the plan's schedule and budget use them)."""
        return dict(self.mode_estimates).get(mode, self.estimate_s) + dict(self.broker_extra_s).get(broker, 0.0)


SCENARIOS = {
    "lifecycle-smoke": ScenarioInfo(
        name="lifecycle-smoke",
        description=("Start a worker, wait until ready, run a chord of three, send SIGTERM "
                     "and check the warm shutdown: exit code, callback, no process left."),
        estimate_s=8.0,  # run 20261202-005733: median 8.1 s
    ),
}


EVICTION_PROFILES = ("defaults", "acks-late", "acks-late+reject-on-worker-lost", "soft-shutdown",
                     "soft-shutdown+remap-sigterm", "finalize-on-shutdown")
SCENARIOS["eviction"] = ScenarioInfo(
    name="eviction",
    description=("A Kubernetes pod eviction with a chord in flight: SIGTERM to the master, a scaled-down "
                 "grace (4 s for 60 s), SIGKILL to the process group, a replacement worker started at "
                 "SIGTERM. Judged from the task ledger, the callback's input and broker snapshots."),
    modes=("verdict", "measure-stall", "master-kill"),
    default_profiles=EVICTION_PROFILES,
    takes_profiles=True,
    estimate_s=14.0,  # issue 15 (run 20261202-005733, 2 cores, up to 6 lanes): verdict median 15.5 s
    mode_estimates=(("measure-stall", 112.0), ("master-kill", 15.0)),  # before the 3 s re-run window
)

# chord-stall (issue 5): task_retry_on_worker_lost exists only in some Celery versions (n/a elsewhere,
# by unknown_settings_reason); its retry countdown is the task's default_retry_delay (180 s), scaled to 1 s.
PROFILES["retry-on-worker-lost"] = {
    "description": ("task_retry_on_worker_lost (Celery retries a task whose pool child died), "
                    "lab.member's default_retry_delay scaled 180 s -> 1 s via task_annotations"),
    "settings": {"task_retry_on_worker_lost": True,
                 "task_annotations": {"lab.member": {"default_retry_delay": 1}}}, "env": {},
}
SCENARIOS["chord-stall"] = ScenarioInfo(
    name="chord-stall",
    description=("A chord whose member's pool child is SIGKILLed (child-death), whose message vanishes "
                 "from the broker before any worker runs it (lost-member), or which exceeds its hard "
                 "time limit (time-limit). Judged from the ledger, the chord body's state as the caller "
                 "sees it, WorkerLostError/time-limit failures and celery.chord_unlock's polls."),
    modes=("child-death", "lost-member", "time-limit"),
    default_profiles=("defaults", "acks-late", "acks-late+reject-on-worker-lost", "retry-on-worker-lost"),
    takes_profiles=True,
    estimate_s=16.0,  # measured on 2 cores, up to 6 lanes: child-death median 16.6 s (max 26.5)
    mode_estimates=(("lost-member", 7.0), ("time-limit", 11.0)),  # lost-member: 12.9 s with its old 15 s window
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
    modes=("targeted", "targeted+kill-child", "targeted@registering", "targeted@reaping",
           "targeted@before-create", "random", "slow-start"),
    default_profiles=("quit", "term", "term-then-quit", "term-remap-quit"),
    takes_profiles=True,
    profile_is_plan=True,
    estimate_s=6.0,  # per attempt; run 20261202-005733: targeted 5.5-6.0 s median
    mode_estimates=(("random", 8.0), ("slow-start", 9.0)),  # random: median 7.4 s, a green pool's hang 19 s
    timing_sensitive=True,  # signals at random moments of pool churn
)


# silent-exit / shutdown (issue 6): modes are start-up conditions (lab/scenarios/startup_conditions.py)
# and signal plans (lab/scenarios/shutdown_semantics.py); both modules import no Celery at load time.
SILENT_EXIT_MODES = tuple(f"{sig}-{moment}" for sig in ("sigterm", "sigint", "sigquit", "sighup")
                          for moment in ("init", "setup", "pool", "consumer", "connect")) + (
    "baseline", "fork-refused", "shm-readonly", "shm-missing", "rlimit-as", "broker-refused",
    "broker-refused-noretry", "broker-silent", "stdout-closed", "stderr-closed", "stdout-reader-exits",
    "systemexit0", "pid1-background", "pid1-detach", "pid1-tee")
SCENARIOS["silent-exit"] = ScenarioInfo(
    name="silent-exit",
    description=("Start a worker under one condition (a shutdown signal at a named start-up moment, fork "
                 "refused, /dev/shm read-only or missing, low RLIMIT_AS, a broker that refuses or never "
                 "answers, closed stdout/stderr, SystemExit(0), PID-1 wrappers) and classify the start: "
                 "ready, failed loudly, silent exit (status 0 or nothing at WARNING+) or hang."),
    modes=SILENT_EXIT_MODES,
    estimate_s=6.0,  # run 20261202-005733: medians 4-8 s per condition
    mode_estimates=(("broker-refused", 36.0), ("broker-silent", 38.0)),  # the 30 s start bound + stop
    timing_sensitive=True,  # a signal at a start-up moment lands a little before or after it
)
SCENARIOS["shutdown"] = ScenarioInfo(
    name="shutdown",
    description=("Long tasks running and short ones prefetched, then a signal plan (TERM, INT, QUIT, TERM "
                 "twice, TERM then QUIT, REMAP_SIGTERM=SIGQUIT, soft shutdown); a drain worker shows what "
                 "came back. Every deviation from the documented warm/cold/soft semantics is a finding."),
    modes=("term", "int", "quit", "term-term", "term-quit", "remap-term", "soft-quit"),
    default_profiles=("defaults", "acks-late"),
    takes_profiles=True,
    estimate_s=21.0,  # run 20261202-005733: term median 20.9 s; quit 23.2 s (solo hangs: 51 s)
    mode_estimates=(("quit", 24.0), ("remap-term", 24.0), ("soft-quit", 20.0), ("term-quit", 24.0)),
)


def resolve_backend(backend: str, broker: str) -> str:
    """Turn 'auto' into the concrete result backend for a broker."""
    if backend != "auto":
        return backend
    return {"redis": "redis", "amqp": "redis", "sql": "sqlite", "sql-postgres": "postgres"}[broker]


# broker-fault (issue 10): modes are lab.faults.broker.MODES, "<fault>" (idle after ready) or
# "<fault>@running" / "<fault>@chord"; the profile places the result backend (same server or apart).
from lab.faults.broker import MODES as BROKER_FAULT_MODES  # noqa: E402 - standard library only

PROFILES["backend-apart"] = {
    "description": ("broker-fault: the result backend on a separate server that stays up (the runner's), "
                    "not on the faulted broker's own server"),
    "settings": {}, "env": {"LAB_BACKEND_PLACEMENT": "apart"},
}
SCENARIOS["broker-fault"] = ScenarioInfo(
    name="broker-fault",
    description=("The cell's own broker server is restarted, down briefly or past the retry budget, "
                 "frozen (SIGSTOP), made to drop its connections, or failed over (Redis Sentinel) while the "
                 "worker is idle, runs a 5 s task, or has a chord in flight; then 3 fresh tasks must complete "
                 "within 30 s. Judged from the probe, the in-flight ledger, the worker's exit and catatonia "
                 "evidence (process tree, log, inspect ping/active, sockets)."),
    modes=BROKER_FAULT_MODES,
    default_profiles=("defaults", "backend-apart"),
    takes_profiles=True,
    # measured on 5.6.2, 2 shared cores: Redis 9-16 s a cell, RabbitMQ 20-30 s (its own node starts per cell),
    # a finding runs out the 30 s probe bound; outage-long waits out the 12 s budget + 8 s
    # run 20261202-005733 (2 cores, up to 6 lanes): Redis restart 9.0 s, drop-connections 10.3 s; RabbitMQ
    # 23-36 s (the cell's own node boots twice for a restart)
    estimate_s=10.0,
    mode_estimates=tuple((m, 33.0) for m in BROKER_FAULT_MODES if m.startswith("outage-long"))
    + tuple((m, 19.0) for m in BROKER_FAULT_MODES if m.startswith(("blackhole", "failover", "outage-short", "outage-reset", "flap"))
            or m.endswith("@chord")),
    broker_extra_s=(("amqp", 20.0),),
)

# issue 11: fault families control, child, resources and publishing through the shutdown window
# (lab/faults/). Estimates: measured on this 2-core machine shared with other runs (5.6.2, redis).
SCENARIOS["remote-control"] = ScenarioInfo(
    name="remote-control",
    description=("Celery remote control at a chosen moment: control.shutdown() with tasks running (judged "
                 "as the warm shutdown it documents), revoke(terminate=True) of a running task, SIGTERM "
                 "then a revoke of a prefetched task during the warm shutdown, pool_shrink/pool_grow; exit "
                 "code, ledger, logs."),
    modes=("shutdown", "revoke-terminate", "revoke-queued-warm", "pool-shrink", "pool-grow"),
    estimate_s=12.0,  # run 20261202-005733: revoke-terminate 11.6 s, shutdown 9.4 s median
    mode_estimates=(("revoke-queued-warm", 14.0), ("shutdown", 10.0), ("pool-shrink", 14.0),
                    ("pool-grow", 15.0)),  # pool-*: + up to one 5 s maintain_pool period
)
SCENARIOS["recycle"] = ScenarioInfo(
    name="recycle",
    description=("Pool children recycled by Celery: worker_max_memory_per_child with tasks that allocate "
                 "48 MiB and keep it (memory), worker_max_tasks_per_child (count), under a flood where "
                 "every task has its own ledger key; afterwards fresh work must still run, and a "
                 "replacement child that never takes work is a finding."),
    modes=("memory", "count"),
    estimate_s=20.0,  # measured: memory 22 s, count 16 s
)
SCENARIOS["publish-through-shutdown"] = ScenarioInfo(
    name="publish-through-shutdown",
    description=("A client keeps publishing while the worker shuts down (warm, cold, soft, eviction); "
                 "afterwards every message is accounted for: consumed once, left in the broker (a drain "
                 "worker runs it), or lost."),
    modes=("warm", "cold", "soft", "eviction"),
    default_profiles=("defaults", "acks-late"),
    takes_profiles=True,
    estimate_s=20.0,  # run 20261202-005733: warm 19.3 s, soft 29.3 s; cold 36.6 s (the drain runs ~130)
    mode_estimates=(("cold", 37.0), ("eviction", 24.0), ("soft", 29.0)),
    # 25 tasks/s land at random phases of the consumer's loop when the shutdown comes: between runs of
    # the same code and lanes, celery#10083's crash on eventlet `warm` (runs 20261204-040854/-043321) and
    # a message lost from the BRPOP buffer on prefork `cold` (20261204-182144; celery#4354) came and went
    timing_sensitive=True,
)
SCENARIOS["start-limits"] = ScenarioInfo(
    name="start-limits",
    description=("Start-up under RLIMIT_NOFILE raised as far as the host allows or set very low, in the "
                 "foreground or with --detach; start-to-ready and daemonisation timed against the lab's "
                 "own limit in the same attempt and compared as ratios."),
    modes=("nofile-high", "nofile-high+detach", "nofile-low", "nofile-low+detach"),
    estimate_s=17.0,  # two starts per attempt; measured 10-17 s foreground, 13-27 s with --detach
    mode_estimates=(("nofile-high+detach", 25.0), ("nofile-low+detach", 25.0)),
)
