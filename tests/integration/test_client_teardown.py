"""The driver's Celery client, torn down before its Redis stops: results it sent that
wait in reference cycles are collected later without reconnecting (CI saw a 156 s
shutdown-race attempt: three 20 s reconnect loops in `AsyncResult.__del__`)."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.matrix import Cell
from lab.scenarios.base import CellContext
from lab.services.redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Cycle:
    def __init__(self, result):
        self.result, self.me = result, self  # collected only by the cyclic collector


def test_results_in_cycles_are_collected_without_a_reconnect_after_the_broker_stopped(tmp_path, caplog):
    import celery
    gc.disable()  # the cycles below wait for the one collection the test makes
    try:
        run(tmp_path, caplog, celery.__version__)
    finally:
        gc.enable()


def run(tmp_path, caplog, version):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        env = {"LAB_BROKER_URL": redis.url_for("it"), "LAB_RESULT_BACKEND": redis.url_for("it", "backend")}
        ctx = CellContext(cell=Cell(version, "solo", "redis", "redis", "lifecycle-smoke", "default", "default"),
                          attempt=1, workdir=tmp_path, queue="lab.it", worker_env=env, profile={}, seed=1)
        held = [Cycle(ctx.client().send_task("lab.churn", kwargs={"key": f"k{i}"}, queue=ctx.queue))
                for i in range(3)]
        assert ctx.client().backend.result_consumer.subscribed_to  # subscribed, as the driver is
        alive = [weakref.ref(c) for c in held]
        del held
        ctx.teardown()
    finally:
        redis.stop()
    assert all(ref() is not None for ref in alive)  # still uncollected: the collection below is the test
    with caplog.at_level(logging.ERROR, logger="celery.backends.redis"):
        gc.collect()
    assert all(ref() is None for ref in alive)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("celery")] == []
