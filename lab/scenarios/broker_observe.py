"""Observers of the broker-fault scenario, apart from its judge.

Contract: every function here looks, never changes what the worker sees
(except `publish_probes`, which sends the liveness probe), never raises
(failures become {"error": ...}), and returns plain JSON-able values:
  effective_retry_settings(app)   the worker's connection-retry settings, read
                                  from the effective config of an app built from
                                  the same environment (lab.app.config), plus
                                  kombu's ensure_connection intervals and the
                                  Redis transport's socket defaults (kombu release
                                  installed, read by introspection);
  put_marker / marker_count       a persistent message on a side queue nobody
                                  consumes: did broker data survive the fault?
  publish_probes(env, n)          n fresh lab.sleep tasks, each retried up to a
                                  bound; their ids and the publish time;
  inspect_worker(env, hostname)   `inspect ping` / `active` replies (None: no reply);
  broker_sockets(worker, port)    ESTABLISHED TCP connections from the worker's
                                  processes to the broker port.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import psutil

from lab.scenarios.base import drop_result_subscriptions
from lab.waits import hold

PROBE_PUBLISH_BOUND_S = 15.0


def _app(env: dict[str, str], name: str):
    from lab.app.celery_app import make_app
    return make_app(env, name=name)


def effective_retry_settings(env: dict[str, str]) -> dict[str, Any]:
    names = ("broker_connection_retry", "broker_connection_retry_on_startup", "broker_connection_max_retries",
             "broker_connection_timeout", "broker_heartbeat", "broker_pool_limit", "broker_transport_options",
             "worker_cancel_long_running_tasks_on_connection_loss", "task_acks_late", "worker_prefetch_multiplier",
             "result_backend_transport_options")
    out: dict[str, Any] = {}
    try:
        app = _app(env, "lab-retry-probe")
        for name in names:
            try:
                out[name] = app.conf[name]
            except KeyError:
                out[name] = "(not a setting in this Celery)"
        from kombu import Connection
        sig = inspect.signature(Connection._ensure_connection if hasattr(Connection, "_ensure_connection")
                                else Connection.ensure_connection)
        out["kombu_ensure_connection"] = {k: v.default for k, v in sig.parameters.items()
                                          if k.startswith("interval")}
        if str(env.get("LAB_BROKER_URL", "")).startswith(("redis", "sentinel")):
            from kombu.transport import redis as kredis
            out["kombu_redis_channel"] = {k: getattr(kredis.Channel, k, None) for k in (
                "socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout",
                "health_check_interval")}
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _connection(env: dict[str, str]):
    from kombu import Connection
    opts = dict(_app(env, "lab-marker").conf.broker_transport_options or {})
    opts.setdefault("max_retries", 2)
    return Connection(env["LAB_BROKER_URL"], connect_timeout=5, transport_options=opts)


def put_marker(env: dict[str, str], queue: str) -> dict[str, Any]:
    """Publish one persistent message to a durable side queue `queue` (nobody consumes it)."""
    try:
        from kombu import Exchange, Queue
        with _connection(env) as conn:
            q = Queue(queue, Exchange(queue, type="direct", durable=True), routing_key=queue, durable=True)
            producer = conn.Producer()
            producer.publish({"marker": True}, exchange=q.exchange, routing_key=queue, declare=[q],
                             delivery_mode=2, retry=True, retry_policy={"max_retries": 3})
            deadline, count = time.monotonic() + 3.0, 0
            while time.monotonic() < deadline:  # RabbitMQ counts a just-published message a moment later
                count = conn.default_channel.queue_declare(queue=queue, passive=True)[1]
                if count:
                    break
                hold(0.1)
            return {"queue": queue, "published": True, "count_before": count}
    except Exception as exc:
        return {"queue": queue, "error": f"{type(exc).__name__}: {exc}"[:300]}


def marker_count(env: dict[str, str], queue: str) -> dict[str, Any]:
    """How many marker messages the broker still holds (0 or a not-found error: the data went)."""
    try:
        with _connection(env) as conn:
            return {"count": conn.default_channel.queue_declare(queue=queue, passive=True)[1]}
    except Exception as exc:
        return {"count": 0, "error": f"{type(exc).__name__}: {exc}"[:300]}


def publish_probes(env: dict[str, str], queue: str, n: int, seconds: float = 0.1) -> dict[str, Any]:
    """Send n fresh tasks from a new client (a stale client connection is not the worker's fault)."""
    app = _app({**env, "LAB_QUEUE": queue}, "lab-probe")
    sent: dict[str, str] = {}
    errors: list[str] = []
    deadline = time.monotonic() + PROBE_PUBLISH_BOUND_S
    started = time.monotonic()
    try:
        for i in range(n):
            key = f"probe-{i}"
            while True:
                try:
                    sent[app.send_task("lab.sleep", args=(seconds,), kwargs={"key": key}, queue=queue).id] = key
                    break
                except Exception as exc:
                    errors.append(f"{key}: {type(exc).__name__}: {exc}"[:200])
                    if time.monotonic() > deadline:
                        break
                    hold(0.5)
    finally:
        drop_result_subscriptions(app)  # its results must not reconnect once the cell's broker is gone
        try:
            app.close()
        except Exception:
            pass
    return {"sent": sent, "publish_mono": started, "published_mono": time.monotonic(), "errors": errors[-5:]}


def inspect_worker(env: dict[str, str], hostname: str, timeout: float = 2.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    app = _app(env, "lab-inspect")
    try:
        insp = app.control.inspect(destination=[hostname], timeout=timeout)
        for what in ("ping", "active"):
            try:
                out[what] = getattr(insp, what)()
            except Exception as exc:
                out[what] = f"error: {type(exc).__name__}: {exc}"[:200]
    finally:
        try:
            app.close()
        except Exception:
            pass
    return out


def broker_sockets(worker, ports: list[int]) -> list[str]:
    """'pid local->remote' for each ESTABLISHED TCP connection of the worker to a broker port."""
    found = []
    for proc in worker.survivors(include_master=True):
        try:
            conns = proc.net_connections(kind="tcp") if hasattr(proc, "net_connections") \
                else proc.connections(kind="tcp")
        except psutil.Error:
            continue
        for c in conns:
            if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in ports:
                found.append(f"{proc.pid} {c.laddr.port}->{c.raddr.port}")
    return found
