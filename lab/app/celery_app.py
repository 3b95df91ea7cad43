"""The app object workers load: `celery -A lab.app.celery_app worker`.

Contract: importing this module builds the app from the environment
(lab.app.config), connects the journal signal handlers and registers the
tasks, then the scenario's worker-side modules named in LAB_APP_MODULES.
Clients build their own app with `make_app(environ)` from the same
variables, so both sides agree on queues and settings; a client sends tasks
by name and needs no task code.
"""

from __future__ import annotations

import importlib
import os
from typing import Mapping

from celery import Celery

from lab.app.config import settings_from_env


def make_app(environ: Mapping[str, str] = os.environ, name: str = "lab") -> Celery:
    new = Celery(name)
    new.conf.update(settings_from_env(environ))
    return new


app = make_app()

import lab.app.signals  # noqa: E402,F401 - connects journal handlers
import lab.app.tasks  # noqa: E402,F401 - registers tasks


def load_plugins(names: str) -> list[str]:
    """Import worker-side modules a scenario asks for (LAB_APP_MODULES, comma-separated),
    e.g. fault hooks on Celery signals; each must live under lab.app."""
    loaded = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if not name.startswith("lab.app."):
            raise ValueError(f"LAB_APP_MODULES: {name!r} must be a module under lab.app")
        importlib.import_module(name)
        loaded.append(name)
    return loaded


load_plugins(os.environ.get("LAB_APP_MODULES", ""))
