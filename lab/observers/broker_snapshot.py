"""Where is a message right now? A read-only look into the broker.

Contract: `snapshot(broker_url, queue, task_ids)` never changes broker state
and never raises (an unreadable broker yields {"error": ...}). It reports
the ready count through kombu (every transport), plus transport detail:
Redis — queue length, the unacked hash and index (and which of `task_ids`
are parked there); SQL — the queue's rows by visibility; AMQP — ready count
(unacked messages of a dead connection return to ready at once).
`parked_task_ids(broker_url)` lists the task ids in Redis' unacked hash (None
for other brokers, or when Redis cannot be read).
"""

from __future__ import annotations

import json
import time
from typing import Any


def _redis(url: str, queue: str, task_ids: list[str]) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        parked = []
        for tag, raw in (client.hgetall("unacked") or {}).items():
            try:
                message = json.loads(raw)[0]
                task_id = (message.get("headers") or {}).get("id")
            except (ValueError, IndexError, AttributeError):
                task_id = None
            parked.append({"tag": tag.decode(), "task_id": task_id})
        in_queue = [json.loads(m).get("headers", {}).get("id") for m in client.lrange(queue, 0, 200)]
        return {"queue_len": client.llen(queue), "unacked": len(parked),
                "unacked_index": client.zcard("unacked_index"),
                "parked_task_ids": [p["task_id"] for p in parked if p["task_id"] in task_ids],
                "queued_task_ids": [t for t in in_queue if t in task_ids]}
    finally:
        client.close()


def _sql(url: str, queue: str, task_ids: list[str]) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.split("+", 1)[1] if url.startswith("sqla+") else url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "select m.visible, m.payload from kombu_message m join kombu_queue q "
                "on m.queue_id = q.id where q.name = :q"), {"q": queue}).fetchall()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        engine.dispose()
    visible, invisible, hidden_ids = 0, 0, []
    for is_visible, payload in rows:
        task_id = None
        try:
            task_id = json.loads(payload).get("headers", {}).get("id")
        except (ValueError, AttributeError, TypeError):
            pass
        if is_visible:
            visible += 1
        else:
            invisible += 1
            if task_id in task_ids:
                hidden_ids.append(task_id)
    return {"rows_visible": visible, "rows_invisible": invisible, "parked_task_ids": hidden_ids}


def _ready_count(url: str, queue: str) -> int | None:
    from kombu import Connection

    with Connection(url, connect_timeout=5, transport_options={"max_retries": 1}) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
        return count


def snapshot(broker_url: str, queue: str, task_ids: list[str] | None = None) -> dict[str, Any]:
    task_ids = list(task_ids or [])
    out: dict[str, Any] = {"at_mono": time.monotonic()}
    try:
        if broker_url.startswith("redis"):
            out.update(_redis(broker_url, queue, task_ids))
        elif broker_url.startswith("sqla+"):
            out.update(_sql(broker_url, queue, task_ids))
        else:
            out["ready"] = _ready_count(broker_url, queue)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def describe(snap: dict[str, Any], task_id: str | None) -> str:
    """One line for the report: where the watched message is."""
    if "error" in snap:
        return f"broker unreadable: {snap['error']}"
    if task_id and task_id in snap.get("parked_task_ids", []):
        if "unacked" in snap:
            return ("in-flight message parked in the Redis unacked set (prediction, not an observation: "
                    "a worker restores it once the visibility timeout has expired)")
        return ("in-flight message's row is invisible (kombu's SQL transport hides every delivered row "
                "and has no visibility timeout to bring one back)")
    if task_id and task_id in snap.get("queued_task_ids", []):
        return "in-flight message back in the queue"
    if "ready" in snap:
        return f"{snap['ready']} message(s) ready in the queue"
    return "in-flight message in neither queue nor unacked set"


def parked_task_ids(broker_url: str) -> list[str] | None:
    """Task ids in kombu's Redis unacked hash (restored only after the visibility timeout);
    None for other brokers (AMQP requeues unacked messages when the connection closes)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
    ids = []
    try:
        for raw in client.hvals("unacked"):
            try:
                ids.append(json.loads(raw)[0]["headers"]["id"])
            except (ValueError, KeyError, IndexError, TypeError):
                continue
    except redis.RedisError:
        return None
    finally:
        client.close()
    return ids
