"""Shared fixtures: every test runs under its own LAB_OWNER token and fails
if any process carrying that token survives it (workers, children, brokers).
Every test process carries LAB_SCOPE = this checkout's reports dir, so
`lab cleanup --check` (scoped by default, as .ci/run calls it) sees what the
suite left and nothing of other checkouts. Celery releases come from a fixed
list (LAB_CELERY_RELEASES): no test asks the package index."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from lab.reaper import OWNER_ENV, SCOPE_ENV, find_owned, kill_tree
from lab.releases import RELEASES_ENV

CHECKOUT_REPORTS = Path(__file__).resolve().parents[1] / "reports"
TEST_RELEASES = "5.3.6,5.4.0,5.5.3,5.6.2,5.7.0"


@pytest.fixture(autouse=True)
def owner_token(monkeypatch):
    token = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(OWNER_ENV, token)
    monkeypatch.setenv(SCOPE_ENV, str(CHECKOUT_REPORTS))
    monkeypatch.setenv(RELEASES_ENV, os.environ.get(RELEASES_ENV, TEST_RELEASES))
    yield token
    left = find_owned(token)
    if left:
        names = [(p.pid, p.name()) for p in left]
        kill_tree(left)
        pytest.fail(f"processes survived the test: {names}")


def pytest_collection_modifyitems(config, items):
    # xdist: keep tests that share a heavy resource (docker engine, nox run) in one worker
    for item in items:
        for mark in ("docker", "e2e"):
            if item.get_closest_marker(mark) and not item.get_closest_marker("xdist_group"):
                item.add_marker(pytest.mark.xdist_group(mark))
