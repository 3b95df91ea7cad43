"""The one shape every scenario has, and the context it runs in.

Contract: a scenario module defines a subclass of Scenario with
  - `not_for(cell) -> str | None`: the reason a cell is n/a that follows from
    the cell alone (a pool without children, a broker without a server):
    decided by the runner before it provisions anything;
  - `applies(ctx) -> str | None`: None, or the reason the cell is n/a,
    decided by probing the installed Celery (a setting or signal exists),
    never by comparing version numbers;
  - `run(ctx) -> dict`: drives workload and faults against real workers
    (ctx.worker(...)) and returns plain observations (JSON-able);
  - `judge(obs) -> Outcome`: a pure function of the observations, so the
    checker is unit-tested without a worker.
The context owns every worker it made and tears them down after `run`, then
runs `cleanups` (last first: e.g. a broker server the scenario started for
itself); `fault_log` holds faults done to something other than a worker
(e.g. that broker), merged into `faults()`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lab.journal import read_journal
from lab.matrix import Cell
from lab.verdict import Outcome
from lab.waits import waiting
from lab.worker import WorkerController, WorkerSpec
from lab.worker_output import DEFAULT_STDIO


@dataclass
class CellContext:
    cell: Cell
    attempt: int
    workdir: Path
    queue: str
    worker_env: dict[str, str]
    profile: dict[str, Any]
    seed: int
    workers: list[WorkerController] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], Any]] = field(default_factory=list)  # run after the workers' teardown
    fault_log: list[dict] = field(default_factory=list)  # faults not done to a worker (e.g. its broker)
    spares_dir: str | None = None  # RabbitMQ nodes the runner booted ahead (lab.services.spares)
    _client: Any = None

    def client(self):
        """A Celery app for sending tasks, configured like the workers."""
        if self._client is None:
            from lab.app.celery_app import make_app
            self._client = make_app({**self.worker_env, "LAB_QUEUE": self.queue}, name="lab-client")
        return self._client

    def forget_results(self) -> None:
        """Before the result backend goes away (a nemesis, teardown): see
        `drop_result_subscriptions`; the client subscribes anew on its next send."""
        if self._client is not None:
            drop_result_subscriptions(self._client)

    @property
    def journal(self) -> Path:
        return self.workdir / "journal.jsonl"

    @property
    def rng(self) -> random.Random:
        return random.Random(self.seed)

    def worker(self, name: str = "worker", **overrides: Any) -> WorkerController:
        """A worker of this cell (not started): its pool, concurrency and queue, the profile's
        environment, `stdio` and `worker_args`; `overrides` set any other WorkerSpec field."""
        spec = WorkerSpec(pool=self.cell.pool, concurrency=self.cell.concurrency,
                          queue=self.queue, env=dict(self.worker_env),
                          stdio=self.profile.get("stdio") or DEFAULT_STDIO,
                          profile_args=list(self.profile.get("worker_args") or []))
        for key, value in overrides.items():
            setattr(spec, key, value)
        controller = WorkerController(spec, self.workdir, self.journal, name=name)
        self.workers.append(controller)
        return controller

    def events(self) -> list[dict]:
        return read_journal(self.journal)

    def wait_for(self, predicate: Callable[[list[dict]], Any], timeout: float,
                 interval: float = 0.1) -> Any:
        """Poll the journal until predicate(events) is truthy; its value or None."""
        deadline = time.monotonic() + timeout
        with waiting("observe"):
            while True:
                value = predicate(self.events())
                if value or time.monotonic() >= deadline:
                    return value or None
                time.sleep(interval)

    def teardown(self) -> list[dict]:
        if self._client is not None:
            self.forget_results()
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        leftovers = []
        for controller in self.workers:
            leftovers.extend(controller.teardown())
        for cleanup in reversed(self.cleanups):  # e.g. a server the scenario started itself
            try:
                cleanup()
            except Exception as exc:
                self.notes.append(f"cleanup failed: {exc!r}")
        self.cleanups.clear()
        return leftovers

    def faults(self) -> list[dict]:
        found = [f for w in self.workers for f in w.faults] + list(self.fault_log)
        return sorted(found, key=lambda f: f["mono"])


def drop_result_subscriptions(app) -> None:
    """Forget the client's pending results before its services go away.

    Every AsyncResult that `send_task` returned unsubscribes from the result backend
    when it is garbage-collected (`AsyncResult.__del__` -> `cancel_for`, celery/result.py
    and celery/backends/redis.py, 5.x). Results caught in reference cycles are collected
    later, in whatever code runs then; once their Redis is stopped, each collection
    retries the reconnect 20 times, 1 s apart (`ResultConsumer.reconnect_on_error`,
    added by celery PR #5921 for celery#5919; the backend's default retry_policy), and
    raises RuntimeError: a later attempt, or a later cell in the same process, would
    stall 20 s per collection (seen in CI: 156 s of one shutdown-race attempt). With the
    pubsub closed and nothing subscribed, `cancel_for` touches no connection. Only the
    calling thread's backend is reached (Celery keeps one per thread unless it is
    thread-safe); never raises."""
    # only a backend already made (never build one here); a thread-safe one is cached app-wide
    backend = getattr(app, "_backend_cache", None) or getattr(getattr(app, "_local", None), "backend", None)
    if backend is None:
        return
    consumer = getattr(backend, "result_consumer", None)
    try:
        for mapping in getattr(backend, "_pending_results", ()):
            mapping.clear()
        if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
            pubsub, consumer._pubsub = consumer._pubsub, None
            getattr(consumer, "subscribed_to", set()).clear()
            pubsub.close()
    except Exception:
        pass


class Scenario:
    name = ""
    owns_broker = False  # True: run() starts the cell's broker itself; the runner provides none

    def not_for(self, cell: Cell) -> str | None:
        """None, or why the cell is n/a, from the cell alone (pool, broker, mode): no Celery
        import and no services, so the runner decides it before provisioning (issue 15)."""
        return None

    def applies(self, ctx: CellContext) -> str | None:
        """None, or why the cell is n/a on the installed Celery (feature detection); runs in the
        cell's venv after `not_for`."""
        return None

    def run(self, ctx: CellContext) -> dict[str, Any]:
        raise NotImplementedError

    def judge(self, obs: dict[str, Any]) -> Outcome:
        raise NotImplementedError
