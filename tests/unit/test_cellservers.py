"""lab.cellserver / lab.cellservers: cells forked from a per-interpreter server, as Popen-like handles."""

import os
import subprocess
import sys

import pytest

from lab.cellservers import CellServers


@pytest.fixture
def servers(tmp_path):
    found = CellServers(tmp_path)
    yield found
    found.close()


def test_a_forked_cell_reports_its_status_and_log(servers, tmp_path):
    server = servers.get(sys.executable, dict(os.environ))
    assert server is not None and server.alive()
    assert servers.get(sys.executable, dict(os.environ)) is server  # one per interpreter
    log = tmp_path / "cell.log"
    cell = server.launch(tmp_path / "no-such-spec.json", log, "lab-test-token")
    assert cell.wait(20) == 1 and cell.poll() == 1  # cellrun.main could not read the spec
    assert "no-such-spec.json" in log.read_text()


def test_a_forked_cell_can_be_terminated_and_times_out_like_popen(servers, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text("{")  # never read: the fifo below blocks the read
    fifo = tmp_path / "block"
    os.mkfifo(fifo)
    server = servers.get(sys.executable, dict(os.environ))
    cell = server.launch(fifo, tmp_path / "cell.log", "lab-test-token")
    with pytest.raises(subprocess.TimeoutExpired):
        cell.wait(0.5)
    cell.kill()
    assert cell.wait(10) == -9


def test_closing_the_servers_ends_their_cells(tmp_path):
    servers = CellServers(tmp_path)
    fifo = tmp_path / "block"
    os.mkfifo(fifo)
    cell = servers.get(sys.executable, dict(os.environ)).launch(fifo, tmp_path / "cell.log", "tok")
    servers.close()
    assert cell.wait(10) < 0  # the parent-death signal took it with the server
