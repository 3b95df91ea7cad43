"""Integration fixtures: real brokers started by the lab's own providers."""

from __future__ import annotations

import pytest

from lab.services import ServiceHub


@pytest.fixture
def hub(tmp_path):
    hub = ServiceHub(tmp_path / "services")
    yield hub
    assert hub.close() == []
