"""Moved to lab.observers.broker_snapshot (issue 11: observers live apart from scenarios); kept for importers."""

from lab.observers.broker_snapshot import *  # noqa: F401,F403
from lab.observers.broker_snapshot import describe, snapshot  # noqa: F401
