"""Faults and read-outs for the chord-stall scenario.

Contract: `remove_message(broker_url, queue, task_id)` takes exactly one
task message out of the broker before any worker consumes it — Redis: LREM
of that list element; SQL (kombu's SQLAlchemy transport): DELETE of that
row; AMQP: basic_get every ready message, ack the one, close the channel so
the others return — and reports what it did; it never raises. The read-outs
never change state and never raise: `chord_state` asks the result backend
(through the client app, so it works on every backend and Celery version)
for the chord body's state and error, each member's state and — on a
backend with native chord join (Redis) — the join counter;
`unlock_policy` reads celery.chord_unlock's retry policy off the installed
Celery (whether, and how often, it would poll for ever).
"""

from __future__ import annotations

import json
from typing import Any

REDIS_PRIORITY_SEP = "\x06\x16"


def _task_id(payload: Any) -> str | None:
    try:
        message = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
        return (message.get("headers") or {}).get("id")
    except (ValueError, AttributeError, TypeError):
        return None


def _remove_redis(url: str, queue: str, task_id: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in [queue] + [f"{queue}{REDIS_PRIORITY_SEP}{p}" for p in range(1, 10)]:
            for raw in client.lrange(key, 0, -1):
                if _task_id(raw) == task_id:
                    removed = client.lrem(key, 1, raw)
                    return {"removed": bool(removed), "how": f"LREM {key!r}", "left": client.llen(key)}
        return {"removed": False, "how": "not found in the queue list(s)"}
    finally:
        client.close()


def _remove_sql(url: str, queue: str, task_id: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.split("+", 1)[1] if url.startswith("sqla+") else url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(text(
                "select m.id, m.payload from kombu_message m join kombu_queue q "
                "on m.queue_id = q.id where q.name = :q"), {"q": queue}).fetchall()
            for row_id, payload in rows:
                if _task_id(payload) == task_id:
                    conn.execute(text("delete from kombu_message where id = :id"), {"id": row_id})
                    return {"removed": True, "how": f"DELETE kombu_message row {row_id}",
                            "left": len(rows) - 1}
        return {"removed": False, "how": f"not among the queue's {len(rows)} row(s)"}
    finally:
        engine.dispose()


def _remove_amqp(url: str, queue: str, task_id: str) -> dict[str, Any]:
    from kombu import Connection, Queue

    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        held, found = [], None
        try:
            while True:
                message = Queue(queue, channel=channel).get(no_ack=False)
                if message is None:
                    break
                if (message.headers or {}).get("id") == task_id and found is None:
                    found = message
                else:
                    held.append(message)
            if found is not None:
                found.ack()
        finally:
            channel.close()  # the held messages return to the queue, unacked
    if found is None:
        return {"removed": False, "how": f"not among {len(held)} ready message(s)"}
    return {"removed": True, "how": "basic_get + basic_ack", "left": len(held)}


def remove_message(broker_url: str, queue: str, task_id: str) -> dict[str, Any]:
    try:
        if broker_url.startswith("redis"):
            return _remove_redis(broker_url, queue, task_id)
        if broker_url.startswith("sqla+"):
            return _remove_sql(broker_url, queue, task_id)
        return _remove_amqp(broker_url, queue, task_id)
    except Exception as exc:
        return {"removed": False, "how": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}


def _redis_counter(backend, group_id: str) -> dict[str, Any] | None:
    client = getattr(backend, "client", None)
    if client is None or not hasattr(client, "zcard") or not hasattr(backend, "get_key_for_group"):
        return None
    jkey = backend.get_key_for_group(group_id, ".j")
    kind = client.type(jkey)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    joined = client.zcard(jkey) if kind == "zset" else client.llen(jkey) if kind == "list" else 0
    size = client.get(backend.get_key_for_group(group_id, ".s"))
    extra = client.get(backend.get_key_for_group(group_id, ".t"))
    return {"joined": int(joined), "size": int(size) + int(extra or 0) if size is not None else None}


def body_state(app, body_id: str) -> tuple[str, str | None]:
    """(state, error repr) of the chord body as the caller sees it."""
    result = app.AsyncResult(body_id)
    state = result.state
    return state, (repr(result.result)[:400] if state == "FAILURE" else None)


def chord_state(app, sent: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        out["body_state"], out["body_error"] = body_state(app, sent["body_id"])
        out["member_states"] = [app.AsyncResult(m).state for m in sent["member_ids"]]
        counter = _redis_counter(app.backend, sent["group_id"])
        if counter is not None:
            out["counter"] = counter
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def unlock_policy(app) -> dict[str, Any]:
    try:
        task = app.tasks["celery.chord_unlock"]
        return {"max_retries": task.max_retries, "interval_s": task.default_retry_delay}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
