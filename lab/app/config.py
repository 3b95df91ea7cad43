"""Celery settings from environment variables, and nothing else.

Contract: `settings_from_env(environ)` returns a dict of lowercase Celery
settings. Named variables cover the common knobs; LAB_CELERY_SETTINGS (a JSON
object) carries any other setting a matrix profile names. Unknown names are
passed through: a profile may use a setting only some Celery versions know.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

VT_TRANSPORTS = ("redis", "rediss", "sqs")
BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}

# env var -> (celery setting, parser)
NAMED = {
    "LAB_BROKER_URL": ("broker_url", str),
    "LAB_RESULT_BACKEND": ("result_backend", str),
    "LAB_QUEUE": ("task_default_queue", str),
    "LAB_ACKS_LATE": ("task_acks_late", lambda v: BOOL[v.lower()]),
    "LAB_REJECT_ON_WORKER_LOST": ("task_reject_on_worker_lost", lambda v: BOOL[v.lower()]),
    "LAB_PREFETCH": ("worker_prefetch_multiplier", int),
    "LAB_SOFT_SHUTDOWN_TIMEOUT": ("worker_soft_shutdown_timeout", float),
    "LAB_TIME_LIMIT": ("task_time_limit", float),
    "LAB_SOFT_TIME_LIMIT": ("task_soft_time_limit", float),
    "LAB_PROC_ALIVE_TIMEOUT": ("worker_proc_alive_timeout", float),
}


def settings_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "broker_url": "memory://",
        "result_backend": None,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": True,
        "result_extended": True,
        "task_track_started": True,
        "broker_transport_options": {},
        "result_backend_transport_options": {},
    }
    for var, (name, parse) in NAMED.items():
        if environ.get(var, "") != "":
            settings[name] = parse(environ[var])
    if environ.get("LAB_VISIBILITY_TIMEOUT") and str(settings["broker_url"]).startswith(VT_TRANSPORTS):
        # only transports that understand it: kombu's SQL transport hands every
        # transport option to SQLAlchemy's create_engine, which rejects it
        settings["broker_transport_options"]["visibility_timeout"] = float(environ["LAB_VISIBILITY_TIMEOUT"])
    if environ.get("LAB_CELERY_SETTINGS"):
        extra = json.loads(environ["LAB_CELERY_SETTINGS"])
        if not isinstance(extra, dict):
            raise ValueError("LAB_CELERY_SETTINGS must be a JSON object of Celery settings")
        for name, value in extra.items():
            if isinstance(value, dict) and isinstance(settings.get(name), dict):
                settings[name] = {**settings[name], **value}
            else:
                settings[name] = value
    queue = settings.get("task_default_queue")
    if queue:
        settings.setdefault("task_default_exchange", queue)
        settings.setdefault("task_default_routing_key", queue)
    return settings
