"""Worker output as production wires it (issue 11): pipes drained by the lab (the default),
a pseudo-terminal, or a regular file. Every mode: ready, warm shutdown, the whole banner and
the shutdown line in the log, the mode and the deviations from a plain worker on record."""

from __future__ import annotations

import os
import signal

import pytest

pytest.importorskip("celery", reason="needs Celery: run the suite with `nox -s tests`")

from lab.observers.exit import exit_observation  # noqa: E402
from lab.worker import QUIET_FLAGS, WorkerController, WorkerSpec  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _worker(tmp_path, services, pool, **spec):
    env = {"LAB_BROKER_URL": services.broker_url, "LAB_RESULT_BACKEND": services.backend_url,
           "LAB_QUEUE": "lab.io"}
    return WorkerController(WorkerSpec(pool=pool, queue="lab.io", env=env, **spec), tmp_path,
                            tmp_path / "journal.jsonl").start()


@pytest.mark.parametrize("pool,stdio", [("prefork", "pipe"), ("gevent", "pipe"), ("prefork", "tty"),
                                        ("gevent", "tty"), ("threads", "file")])
def test_every_stdio_mode_keeps_every_line(tmp_path, hub, pool, stdio):
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "io")
    worker = _worker(tmp_path, services, pool, stdio=stdio)
    try:
        assert worker.wait_ready(60), worker.log_text()[-3000:]
        if stdio == "tty":  # the worker's fds 0-2 are a terminal, its session's controlling one
            assert os.path.realpath(f"/proc/{worker.pid}/fd/1").startswith("/dev/pts/")
        elif stdio == "pipe":
            assert os.readlink(f"/proc/{worker.pid}/fd/1").startswith("pipe:")
            assert os.readlink(f"/proc/{worker.pid}/fd/2").startswith("pipe:")
        worker.send(signal.SIGTERM)
        obs = exit_observation(worker, bound=30)
        assert obs["exit_code"] == 0, obs["log_tail"]
        text = worker.log_text()
        assert "[tasks]" in text and "ready." in text and "Warm shutdown" in text, text[-2000:]
        assert "\x1b[" not in text and "\r\n" not in text  # judges read plain text
    finally:
        assert worker.teardown() == []
    env = worker.environment
    assert env["stdio"] == stdio and not env.get("stdio_dropped_bytes")
    if stdio != "file":
        assert env["stdio_drained_to_eof"] and sum(env["stdio_bytes"].values()) > 0
    whats = " ".join(d["what"] for d in env["deviations"])
    assert "--without-gossip" not in " ".join(env["argv"]) and "env --default-signal" in whats


def test_default_flags_and_a_profile_that_turns_them_off(tmp_path, hub):
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "io")
    worker = _worker(tmp_path, services, "solo", profile_args=list(QUIET_FLAGS))
    try:
        assert worker.wait_ready(60), worker.log_text()[-3000:]
    finally:
        worker.teardown()
    assert worker.environment["argv"][-3:] == list(QUIET_FLAGS)
    assert any(d["why"] == "the profile's worker_args" for d in worker.environment["deviations"])


def test_eventlet_warm_shutdown_on_a_pipe_is_what_a_file_hid(tmp_path, hub):
    """celery/celery#10083 (fixed by celery/celery#10123): safe_say's os.write, green under eventlet,
    trampolines on any non-regular fd, and the SIGTERM handler runs inside the hub, so a warm shutdown
    with stdout on a pipe or a tty raises RuntimeError and exits 1. With stdout on a regular file it
    exits 0: the lab's old wiring could not show it. On releases with the fix both exit 0."""
    services = hub.for_cell("redis", "redis", tmp_path / "svc", "io")
    codes = {}
    for stdio in ("file", "pipe"):
        worker = _worker(tmp_path / stdio, services, "eventlet", stdio=stdio)
        try:
            assert worker.wait_ready(60), worker.log_text()[-3000:]
            worker.send(signal.SIGTERM)
            obs = exit_observation(worker, bound=30)
            codes[stdio] = (obs["exit_code"], "do not call blocking functions from the mainloop" in worker.log_text())
        finally:
            worker.teardown()
    assert codes["file"] == (0, False), codes
    assert codes["pipe"] in ((0, False), (1, True)), codes
