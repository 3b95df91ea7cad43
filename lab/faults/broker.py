"""Broker faults as data: what is done to a cell's own broker server, and when.

Contract: a broker-fault mode is `<fault>` or `<fault>@<moment>` (MODES lists
every one); `parse_mode(mode)` returns a frozen FaultPlan holding the fault,
the moment, the lab's (scaled) durations and the production values they
stand for, and the Celery settings the plan sets on the worker. Nothing
here touches a process: lab.services.nemesis carries a plan out against a
server the lab itself started. Standard library only.

Faults (the issue-10 list; Jepsen's nemeses, Celery's t/smoke operations):
  restart           stop the server, start it again on the same port at once
  outage-short      down OUTAGE_SHORT_S, inside the worker's (scaled) retry budget
  outage-long       down past that budget (budget + OUTAGE_LONG_EXTRA_S)
  outage-reset      down OUTAGE_SHORT_S while a cell-owned loopback listener on the
                    server's port accepts every connection and resets it (what
                    Docker's port proxy does while a container restarts)
  flap              restart FLAP_TIMES times, FLAP_GAP_S apart (celery#8030: a worker
                    that "works on first redis restart, becomes zombie on further restarts")
  blackhole         SIGSTOP the server (TCP connections stay open, nothing answers)
                    for BLACKHOLE_S, then SIGCONT
  drop-connections  the server closes client connections and stays up (Redis
                    CLIENT KILL TYPE normal; rabbitmqctl close_all_connections;
                    PostgreSQL pg_terminate_backend)
  failover          Redis primary + replica + Sentinel: the primary is killed,
                    Sentinel promotes the replica; the worker uses sentinel:// URLs
Moments: idle (1 s after ready), running (a 5 s task running), chord (a chord
of three whose 5 s member runs).

The retry budget: Celery's consumer reconnects through kombu's
Connection.ensure_connection(max_retries=broker_connection_max_retries) with
kombu's default intervals 2, 4, 6 ... 30 s (kombu/connection.py, 5.3-5.6;
celery/worker/consumer/consumer.py ensure_connected). The default 100 retries
are about 2790 s; the outage modes run the worker with 3 retries (12 s) and
record what that stands for.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class BrokerFault(str, enum.Enum):
    RESTART = "restart"
    OUTAGE_SHORT = "outage-short"
    OUTAGE_LONG = "outage-long"
    OUTAGE_RESET = "outage-reset"
    FLAP = "flap"
    BLACKHOLE = "blackhole"
    DROP_CONNECTIONS = "drop-connections"
    FAILOVER = "failover"


class Moment(str, enum.Enum):
    IDLE = "idle"        # the worker idle, IDLE_AFTER_READY_S after ready
    RUNNING = "running"  # a LONG_TASK_S task running for FAULT_AFTER_START_S
    CHORD = "chord"      # a chord of three, its LONG_TASK_S member running


MODES = tuple(f.value + ("" if m is Moment.IDLE else f"@{m.value}") for f in BrokerFault for m in Moment)

IDLE_AFTER_READY_S = 1.0
LONG_TASK_S = 5.0            # the in-flight task (issue 10: "while a 5 s task runs")
FAULT_AFTER_START_S = 1.0    # the fault hits this long after the in-flight task started
CHORD_SHORT_S = 0.3
BLACKHOLE_S = 8.0
OUTAGE_SHORT_S = 5.0
OUTAGE_LONG_EXTRA_S = 8.0
FLAP_TIMES = 3
FLAP_GAP_S = 4.0             # between restarts: the worker has reconnected (2 s retry) and re-mingled
SCALED_MAX_RETRIES = 3       # stands for Celery's default broker_connection_max_retries=100
DEFAULT_MAX_RETRIES = 100
KOMBU_INTERVALS = (2.0, 2.0, 30.0)  # ensure_connection interval_start, interval_step, interval_max
# Sentinel (redis sentinel.conf): scaled from the production defaults
SENTINEL_DOWN_AFTER_MS = 1000       # stands for down-after-milliseconds 30000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000  # stands for failover-timeout 180000
SENTINEL_MASTER = "lab-primary"


def retry_budget_s(max_retries: int, intervals: tuple[float, float, float] = KOMBU_INTERVALS) -> float:
    """Seconds kombu sleeps before giving up after `max_retries` failed attempts
    (connect attempts themselves assumed instant: a refused port answers at once)."""
    start, step, top = intervals
    total, interval = 0.0, start
    for _ in range(max_retries):
        total += min(interval, top)
        interval += step
    return total


@dataclass(frozen=True)
class FaultPlan:
    fault: BrokerFault
    moment: Moment
    down_s: float = 0.0                  # how long the server is down / silent (lab)
    production: dict[str, Any] = field(default_factory=dict)  # what the scaled values stand for
    settings: dict[str, Any] = field(default_factory=dict)    # Celery settings the plan sets
    description: str = ""

    @property
    def mode(self) -> str:
        return self.fault.value + ("" if self.moment is Moment.IDLE else f"@{self.moment.value}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(fault=self.fault.value, moment=self.moment.value, mode=self.mode)
        return data


def parse_mode(mode: str) -> FaultPlan:
    """FaultPlan for a mode name; ValueError naming the allowed modes otherwise."""
    name, _, moment_name = mode.partition("@")
    try:
        fault = BrokerFault(name)
        moment = Moment(moment_name or "idle")
    except ValueError:
        raise ValueError(f"unknown broker-fault mode {mode!r}; allowed: {', '.join(MODES)}") from None
    budget = retry_budget_s(SCALED_MAX_RETRIES)
    retry_scale = {"broker_connection_max_retries": SCALED_MAX_RETRIES,
                   "stands_for_max_retries": DEFAULT_MAX_RETRIES,
                   "retry_budget_s": budget,
                   "stands_for_retry_budget_s": retry_budget_s(DEFAULT_MAX_RETRIES)}
    if fault is BrokerFault.RESTART:
        return FaultPlan(fault, moment, 0.0, {"what": "a broker restart (deploy, crash, OOM kill)"},
                         description="stop the server, start it again on the same port at once")
    if fault is BrokerFault.OUTAGE_SHORT:
        return FaultPlan(fault, moment, OUTAGE_SHORT_S, retry_scale,
                         {"broker_connection_max_retries": SCALED_MAX_RETRIES},
                         f"down {OUTAGE_SHORT_S:g} s, inside the scaled {budget:g} s retry budget")
    if fault is BrokerFault.OUTAGE_LONG:
        down = budget + OUTAGE_LONG_EXTRA_S
        return FaultPlan(fault, moment, down, retry_scale,
                         {"broker_connection_max_retries": SCALED_MAX_RETRIES},
                         f"down {down:g} s, past the scaled {budget:g} s retry budget")
    if fault is BrokerFault.OUTAGE_RESET:
        return FaultPlan(fault, moment, OUTAGE_SHORT_S,
                         {"what": "a broker container restarting behind its port proxy: TCP accepted, reset"},
                         description=f"down {OUTAGE_SHORT_S:g} s, the port accepting and resetting connections")
    if fault is BrokerFault.FLAP:
        return FaultPlan(fault, moment, 0.0, {"what": "a broker restarted again and again (a crash loop, "
                                                      "a rolling deploy)", "times": FLAP_TIMES, "gap_s": FLAP_GAP_S},
                         description=f"restart {FLAP_TIMES} times, {FLAP_GAP_S:g} s apart")
    if fault is BrokerFault.BLACKHOLE:
        return FaultPlan(fault, moment, BLACKHOLE_S,
                         {"what": "a frozen broker (VM stall, GC pause, partition): connections open, "
                                  "no answer; shorter than the AMQP heartbeat (Celery broker_heartbeat=120 s, "
                                  "RabbitMQ proposes 60 s)"},
                         description=f"SIGSTOP the server for {BLACKHOLE_S:g} s, then SIGCONT")
    if fault is BrokerFault.DROP_CONNECTIONS:
        return FaultPlan(fault, moment, 0.0, {"what": "a proxy/LB idle reset, a server closing clients"},
                         description="the server closes its client connections and stays up")
    return FaultPlan(fault, moment, 0.0,
                     {"down_after_milliseconds": SENTINEL_DOWN_AFTER_MS, "stands_for_down_after_ms": 30000,
                      "failover_timeout_ms": SENTINEL_FAILOVER_TIMEOUT_MS,
                      "stands_for_failover_timeout_ms": 180000},
                     description="kill the Redis primary; Sentinel promotes the replica")
