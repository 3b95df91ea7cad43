"""compose/*.yml for hand-started brokers: public images, loopback-only ports, healthchecks.

Parsed with PyYAML (no Docker needed); additionally rendered by `docker compose
config` (or a standalone `docker-compose`) when one is installed -- only that
part is skipped, with the reason, when none is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
FILES = sorted(COMPOSE_DIR.glob("*.yml")) + sorted(COMPOSE_DIR.glob("*.yaml"))
EXPECTED_IMAGES = {"redis": "redis:7", "postgres": "postgres:16", "rabbitmq": "rabbitmq:3.13"}
CONTAINER_PORTS = {"redis": 6379, "postgres": 5432, "rabbitmq": 5672}
# "127.0.0.1:${VAR:-6379}:6379" or "127.0.0.1:6379:6379[/tcp]"
LOOPBACK_PORT = re.compile(r"^127\.0\.0\.1:(\$\{[A-Z_]+:-\d+\}|\d+):(\d+)(/tcp)?$")


def _services() -> dict[str, dict]:
    found = {}
    for path in FILES:
        for name, spec in (yaml.safe_load(path.read_text()) or {}).get("services", {}).items():
            assert name not in found, f"service {name} defined twice ({path.name})"
            found[name] = spec
    return found


def test_compose_files_exist():
    assert FILES, f"no compose files in {COMPOSE_DIR}"
    assert (COMPOSE_DIR / "README.md").exists()


def test_every_broker_has_a_public_image():
    services = _services()
    assert set(EXPECTED_IMAGES) <= set(services), f"missing: {set(EXPECTED_IMAGES) - set(services)}"
    for name, image in EXPECTED_IMAGES.items():
        assert services[name].get("image") == image


@pytest.mark.parametrize("name", sorted(EXPECTED_IMAGES))
def test_ports_published_on_loopback_only(name):
    spec = _services()[name]
    ports = spec.get("ports")
    assert ports, f"{name} publishes no port"
    for port in ports:
        if isinstance(port, dict):           # long syntax
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            continue
        match = LOOPBACK_PORT.match(str(port))
        assert match, f"{name}: {port!r} is not bound to 127.0.0.1"
        assert int(match.group(2)) == CONTAINER_PORTS[name]
    assert spec.get("network_mode") != "host", f"{name} must not use host networking"


@pytest.mark.parametrize("name", sorted(EXPECTED_IMAGES))
def test_healthcheck(name):
    check = _services()[name].get("healthcheck")
    assert check and check.get("test"), f"{name} has no healthcheck"
    test = check["test"]
    assert isinstance(test, (list, str)) and test
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    assert check.get("interval") and check.get("retries")


def test_readme_names_the_url_variables():
    readme = (COMPOSE_DIR / "README.md").read_text()
    for var in ("LAB_REDIS_URL", "LAB_POSTGRES_URL", "LAB_AMQP_URL"):
        assert var in readme


def test_readme_urls_match_the_compose_credentials():
    readme = (COMPOSE_DIR / "README.md").read_text()
    services = _services()
    rabbit = services["rabbitmq"].get("environment", {})
    user, password = rabbit.get("RABBITMQ_DEFAULT_USER", "guest"), rabbit.get("RABBITMQ_DEFAULT_PASS", "guest")
    assert f"amqp://{user}:{password}@127.0.0.1:5672//" in readme
    pg_password = services["postgres"].get("environment", {}).get("POSTGRES_PASSWORD")
    if pg_password:
        assert f"postgresql://postgres:{pg_password}@127.0.0.1:5432/" in readme


def _compose_command() -> tuple[list[str] | None, str]:
    """The compose CLI to validate with, or (None, why there is none)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"], probe.stdout.strip()
    standalone = shutil.which("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [standalone], probe.stdout.strip().splitlines()[0]
    why = ("the docker CLI has no compose plugin" if docker else "no docker CLI") + \
        " and no docker-compose is on PATH (Debian 12 has no docker-compose-plugin package)"
    return None, why


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_compose_config_accepts(path, tmp_path):
    command, about = _compose_command()
    if command is None:
        pytest.skip(f"docker compose config not run: {about}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_") or not k.endswith("_PORT")}
    result = subprocess.run([*command, "-f", str(path), "-p", "lab-compose-check", "config"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, f"{about}: {result.stderr}"
    rendered = yaml.safe_load(result.stdout)
    for name, spec in rendered["services"].items():
        for port in spec.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
                assert str(port.get("published")) == str(CONTAINER_PORTS.get(name, port.get("published")))
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
        assert spec.get("healthcheck", {}).get("test"), f"{name}: healthcheck lost in rendering"
