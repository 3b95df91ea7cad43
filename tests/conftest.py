"""Shared fixtures: every test runs under its own LAB_OWNER token and fails
if any process carrying that token survives it (workers, children, brokers)."""

from __future__ import annotations

import os
import uuid

import pytest

from lab.reaper import OWNER_ENV, find_owned, kill_tree


@pytest.fixture(autouse=True)
def owner_token(monkeypatch):
    token = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(OWNER_ENV, token)
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
