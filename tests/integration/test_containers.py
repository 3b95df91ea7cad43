"""The "container" provider for real: a Docker engine, local images, Redis and Postgres.

A module fixture provisions an engine where none answers: when `dockerd` is
missing it installs Debian's docker.io (only as root and with CI or
LAB_INSTALL_DOCKER=1; otherwise the module is skipped with the reason), then
starts a private `DockerEngine` (no bridge, no iptables: host networking
only) and builds the lab/*-local images from installed binaries (nothing is
pulled); dockerd and containerd carry the module's LAB_OWNER, each container
the LAB_OWNER conftest gives its test (which fails a test that leaves a
process with it). Tests run in file order; the last one stops the engine and
asserts that no container and no process of any of these tokens is left.
Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from types import SimpleNamespace

import pytest

from lab.reaper import find_owned, kill_owned
from lab.services.base import ServiceError, port_open

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(600)]
TIMINGS: dict[str, float] = {}


def _timed(label: str, func, *args, **kwargs):
    began = time.monotonic()
    try:
        return func(*args, **kwargs)
    finally:
        TIMINGS[label] = round(time.monotonic() - began, 2)
        print(f"[timing] {label}: {TIMINGS[label]}s")


def _apt(*args: str, timeout: float) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True, timeout=timeout,
                            env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        pytest.skip(f"apt-get {' '.join(args)} failed: {(result.stderr or result.stdout)[-800:]}")


def _ensure_dockerd() -> None:
    from lab.services.docker_engine import docker_reachable, find_dockerd
    if docker_reachable() or find_dockerd():
        return
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers and no dockerd is installed (installing needs root)")
    if not (os.environ.get("CI") or os.environ.get("LAB_INSTALL_DOCKER") == "1"):
        pytest.skip("no Docker engine answers and no dockerd is installed; "
                    "set LAB_INSTALL_DOCKER=1 (or CI) to let this test apt-get install docker.io")
    if not shutil.which("apt-get"):
        pytest.skip("no dockerd and no apt-get to install docker.io with")

    def install() -> None:
        _apt("update", timeout=300)
        _apt("install", "-y", "--no-install-recommends", "docker.io", timeout=600)
    _timed("apt-get install docker.io", install)
    if not find_dockerd():
        pytest.skip("docker.io installed but no dockerd found")


def _has_rabbitmq() -> bool:
    from lab.services.images import rabbitmq_home
    try:
        return bool(rabbitmq_home())
    except ServiceError:
        return False


@pytest.fixture(scope="module")
def lab_docker():
    pytest.importorskip("testcontainers")
    from lab.services.docker_engine import DockerEngine
    from lab.services.images import build_image
    token = f"lab-test-{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_OWNER", token)
        patch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
        for var in ("LAB_REDIS_IMAGE", "LAB_POSTGRES_IMAGE", "LAB_RABBITMQ_IMAGE"):
            patch.delenv(var, raising=False)
        _ensure_dockerd()
        engine = DockerEngine(start_timeout=60)
        try:
            _timed("engine start", engine.start)
            patch.setenv("DOCKER_HOST", engine.host)
            images = {kind: _timed(f"image build {kind}", build_image, kind, engine.host)
                      for kind in ("redis", "postgres") + (("rabbitmq",) if _has_rabbitmq() else ())}
            yield SimpleNamespace(engine=engine, token=token, images=images, tokens={token})
        finally:
            engine.stop()
            kill_owned(token)  # last line of defence if a test failed half-way
            print(f"[timing] summary: {TIMINGS}")


def _client(lab_docker):
    from lab.services.images import docker_client
    return docker_client(lab_docker.engine.host, timeout=30)


@pytest.fixture
def docker_lab(lab_docker, owner_token):
    """The module's engine, with this test's LAB_OWNER (conftest's, per test) recorded."""
    lab_docker.tokens.add(owner_token)
    lab_docker.test_token = owner_token
    return lab_docker


def _our_containers(lab_docker) -> list:
    """Containers, running or not, labelled with any LAB_OWNER token of this module."""
    client = _client(lab_docker)
    try:
        return [c for token in sorted(lab_docker.tokens)
                for c in client.containers.list(all=True, filters={"label": f"lab.owner={token}"})]
    finally:
        client.close()


def test_engine_answers(lab_docker):
    from lab.services.docker_engine import docker_reachable
    assert docker_reachable(lab_docker.engine.host)
    assert lab_docker.engine.version, "the engine reported no version"
    if lab_docker.engine.started:
        names = {p.name() for p in find_owned(lab_docker.token)}
        assert "dockerd" in names, f"our dockerd must carry LAB_OWNER: {names}"


def test_images_are_local_and_idempotent(lab_docker):
    from lab.services.images import build_image, image_tag
    client = _client(lab_docker)
    try:
        for kind, tag in lab_docker.images.items():
            assert tag == image_tag(kind) and tag.startswith(f"lab/{kind}-local:")
            first = client.images.get(tag).id
            began = time.monotonic()
            assert build_image(kind, lab_docker.engine.host) == tag
            assert time.monotonic() - began < 10, "an existing tag must not be rebuilt"
            assert client.images.get(tag).id == first
    finally:
        client.close()


def test_container_redis(docker_lab, tmp_path):
    from lab.services.containers import ContainerRedis
    from lab.services.redis import redis_command
    redis = ContainerRedis(tmp_path / "redis", docker_host=docker_lab.engine.host, start_timeout=60)
    try:
        _timed("container start redis", redis.start)
        port = redis.port
        assert redis.provider == "container" and redis.version[:1].isdigit()
        assert redis.url_for("cell", "broker") == f"redis://127.0.0.1:{port}/0"
        assert redis.url_for("cell", "backend") == f"redis://127.0.0.1:{port}/1"
        assert redis_command("127.0.0.1", port, "PING").startswith(b"+PONG")
        attrs = redis.container.get_wrapped_container().attrs
        assert attrs["HostConfig"]["NetworkMode"] == "host"
        assert attrs["Config"]["Labels"]["lab.owner"] == docker_lab.test_token
        owned = {p.name() for p in find_owned(docker_lab.test_token)}
        assert "redis-server" in owned, f"the containerised server must carry LAB_OWNER: {owned}"
        _timed("container restart redis", redis.restart)
        assert redis.port == port and redis_command("127.0.0.1", port, "PING").startswith(b"+PONG")
    finally:
        redis.stop()
        redis.stop()  # idempotent
    assert not port_open("127.0.0.1", port)
    assert not _our_containers(docker_lab)
    assert "Ready to accept connections" in redis.log_path.read_text()


def test_container_postgres(docker_lab, tmp_path):
    from lab.services.containers import ContainerPostgres
    from lab.services.postgres import SCHEMES
    pg = ContainerPostgres(tmp_path / "pg", docker_host=docker_lab.engine.host, start_timeout=90)
    try:
        _timed("container start postgres", pg.start)
        port = pg.port
        assert pg.port != 5432 and pg.version[:1].isdigit()
        pg.prepare("Cell-1.x")
        pg.prepare("Cell-1.x")  # idempotent
        for role in ("broker", "backend"):   # the local provider's shape: sqla+postgresql…, db+postgresql…
            assert pg.url_for("Cell-1.x", role) == f"{SCHEMES[role]}://postgres@127.0.0.1:{port}/cell_1_x"
            assert SCHEMES[role].startswith({"broker": "sqla+postgresql", "backend": "db+postgresql"}[role])
        assert pg.sql("select 1", database="cell_1_x") == "1"
        pg.sql("create table kept (x int); insert into kept values (42)", database="cell_1_x")
        assert pg.container.get_wrapped_container().attrs["HostConfig"]["NetworkMode"] == "host"
        _timed("container restart postgres", pg.restart)
        assert pg.port == port and pg.sql("select x from kept", database="cell_1_x") == "42"
    finally:
        pg.stop()
        pg.stop()
    assert not port_open("127.0.0.1", port)
    assert not _our_containers(docker_lab)


def test_container_rabbitmq(docker_lab, tmp_path):
    if "rabbitmq" not in docker_lab.images:
        pytest.skip("rabbitmq-server is not installed: no lab/rabbitmq-local image")
    from lab.services.containers import ContainerRabbitMQ
    from lab.services.rabbitmq import amqp_handshake
    rabbit = ContainerRabbitMQ(tmp_path / "rabbit", docker_host=docker_lab.engine.host, start_timeout=120)
    try:
        _timed("container start rabbitmq", rabbit.start)
        port = rabbit.port
        assert len({port, rabbit.dist_port, rabbit.epmd_port, 5672, 4369}) == 5
        assert rabbit.version[:1].isdigit()
        rabbit.prepare("Cell-1.x")
        rabbit.prepare("Cell-1.x")  # idempotent
        assert rabbit.url_for("Cell-1.x") == f"amqp://guest:guest@127.0.0.1:{port}/Cell-1.x"
        assert "Cell-1.x" in rabbit.ctl("list_vhosts", "--quiet", "--no-table-headers").split()
        assert amqp_handshake("127.0.0.1", port, expect=f"lab-{port}@".encode())
        owned = {p.name() for p in find_owned(docker_lab.test_token)}
        assert "beam.smp" in owned, owned
        _timed("container restart rabbitmq", rabbit.restart)
        assert "Cell-1.x" in rabbit.ctl("list_vhosts", "--quiet", "--no-table-headers").split()
    finally:
        rabbit.stop()
    assert not port_open("127.0.0.1", port)
    assert not _our_containers(docker_lab)


def test_image_override_skips_the_build(docker_lab, tmp_path, monkeypatch):
    from lab.services.containers import ContainerRedis
    monkeypatch.setenv("LAB_REDIS_IMAGE", docker_lab.images["redis"])
    redis = ContainerRedis(tmp_path / "redis", docker_host=docker_lab.engine.host)
    try:
        redis.start()
        assert redis.image == docker_lab.images["redis"]
        assert any("LAB_REDIS_IMAGE" in note for note in redis.notes), redis.notes
    finally:
        redis.stop()
    assert not _our_containers(docker_lab)


def test_failed_start_removes_the_container(docker_lab, tmp_path):
    from lab.services.containers import ContainerRedis
    # the postgres image has no redis-server: the container exits at once
    broken = ContainerRedis(tmp_path / "broken", image=docker_lab.images["postgres"],
                            docker_host=docker_lab.engine.host, start_timeout=30)
    began = time.monotonic()
    with pytest.raises(ServiceError):
        broken.start()
    assert time.monotonic() - began < 30, "an exited container must fail fast, not wait out the timeout"
    assert broken.container is None and not _our_containers(docker_lab)


def test_engine_stop_leaves_nothing(lab_docker):
    engine = lab_docker.engine
    assert not _our_containers(lab_docker)
    root, started = engine.root, engine.started
    engine.stop()
    engine.stop()  # idempotent
    left = [(p.pid, p.name()) for token in lab_docker.tokens for p in find_owned(token)]
    assert not left, f"processes still carrying LAB_OWNER: {left}"
    if started:
        assert not engine.leftovers() and not root.exists()
        with open("/proc/self/mounts") as mounts:
            assert str(root) not in mounts.read()
