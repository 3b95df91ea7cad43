"""Fault family `control`: Celery remote control through the broker, at a chosen moment.

Contract: `Control` names the operations a matrix may ask for;
`send(app, op, hostname, ...)` issues one through the client app's
`app.control` (the same API `celery control` / `celery inspect` use, celery/
app/control.py) addressed to one worker by hostname, and returns what was sent
and what came back: {"op", "mono" (monotonic time of the call), "reply"
(the worker's replies, when the command replies), "error" (an exception the
client raised, repr)}. Never raises. Remote control needs a transport with
fanout exchanges (the pidbox): `supported(broker_url)` says whether kombu's
transport for the URL implements them (redis, amqp yes; SQLAlchemy no).
"""

from __future__ import annotations

import enum
import time
from typing import Any


class Control(str, enum.Enum):
    SHUTDOWN = "shutdown"                      # app.control.shutdown: documented as a warm shutdown
    REVOKE_TERMINATE = "revoke-terminate"      # revoke(id, terminate=True) of a running task
    REVOKE_QUEUED_WARM = "revoke-queued-warm"  # SIGTERM (warm), then revoke a prefetched task
    POOL_SHRINK = "pool-shrink"                # pool_shrink(1)
    POOL_GROW = "pool-grow"                    # pool_grow(1)


REPLY_TIMEOUT_S = 3.0


def supported(broker_url: str) -> bool:
    """True when the broker's kombu transport implements fanout (needed by the pidbox)."""
    from kombu import Connection

    conn = Connection(broker_url)
    try:
        implements = getattr(conn.transport, "implements", None)
        types = getattr(implements, "exchange_type", None) or ()
        return "fanout" in types
    except Exception:
        return False
    finally:
        conn.release()


def send(app, op: Control | str, hostname: str, task_id: str | None = None, n: int = 1) -> dict[str, Any]:
    """Issue one remote-control operation to `hostname`; what was sent and replied (never raises)."""
    op = Control(op)
    out: dict[str, Any] = {"op": op.value, "hostname": hostname, "mono": time.monotonic(),
                           "reply": None, "error": None}
    dest = [hostname]
    try:
        if op == Control.SHUTDOWN:
            app.control.shutdown(destination=dest)
        elif op == Control.REVOKE_TERMINATE:
            out["task_id"] = task_id
            out["reply"] = app.control.revoke(task_id, terminate=True, signal="SIGTERM", destination=dest,
                                              reply=True, timeout=REPLY_TIMEOUT_S)
        elif op == Control.REVOKE_QUEUED_WARM:
            out["task_id"] = task_id
            out["reply"] = app.control.revoke(task_id, destination=dest, reply=True, timeout=REPLY_TIMEOUT_S)
        elif op == Control.POOL_SHRINK:
            out["reply"] = app.control.pool_shrink(n=n, destination=dest, reply=True, timeout=REPLY_TIMEOUT_S)
        elif op == Control.POOL_GROW:
            out["reply"] = app.control.pool_grow(n=n, destination=dest, reply=True, timeout=REPLY_TIMEOUT_S)
    except Exception as exc:  # the client side failing is an observation, not a lab error
        out["error"] = repr(exc)[:500]
    out["reply"] = _plain(out["reply"])
    return out


def _plain(value: Any) -> Any:
    """Replies as JSON-able values ([{hostname: {...}}])."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
